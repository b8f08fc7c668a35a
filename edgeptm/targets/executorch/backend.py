"""ExecuTorch backend: runs a ``.pte`` program from ``edgeptm compile --target executorch`` on the
ExecuTorch runtime's Python bindings (the C++ runtime an Android or iOS app links), with its
XNNPACK delegate.

Threads: the XNNPACK delegate runs on ExecuTorch's one thread pool per process (pthreadpool),
sized at start to the cores ExecuTorch counts as performance cores (2 here). ExecuTorch 1.5
exposes no per-program setting; ``portable_lib._unsafe_reset_threadpool(n)`` resizes that pool,
which is safe while no method is running, so ``threads`` resizes it when the backend opens, for
every ExecuTorch program in the process (the last backend opened wins).

Shapes: a program accepts the shapes it was built for (``compile.shapes`` in the manifest: static
unless a range was asked for). The runtime refuses other shapes of a static program with a bare
"set_inputs() failed with error 0x10", and lets a dynamic program's input be resized to any shape
of no more elements than its bound, on its fixed axes too (a batch-dynamic ResNet built for 32x32
ran a 1x3x40x40 feed). So the backend checks every feed first and refuses another shape with the
command that builds the right program.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Iterator, Sequence

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.environment import silence_known_warnings
from edgeptm.errors import BackendError, RuntimeUnavailable, UsageError
from edgeptm.runtime.engine import EngineBackend

INSTALL_HINT = "pip install executorch with a constraint that keeps your torch"
DELEGATE = "XnnpackBackend"


@contextlib.contextmanager
def quiet_import(keep_warnings: bool = False) -> Iterator[None]:
    """Importing ExecuTorch (and the torchao modules it loads, some lazily while lowering) logs a
    torch deprecation notice about torchao's enums (``environment.silence_known_warnings`` drops
    it), and the bindings warn that they are experimental: noise to users, dropped (Python
    warnings kept with ``keep_warnings``)."""
    silence_known_warnings()
    with warnings.catch_warnings():
        if not keep_warnings:
            warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """The runtime's C++ logs the CPU probe behind its thread pool ("Failed to open midr file",
    on every x86 machine) and each pool resize to the process's stderr, not to Python: while the
    pool is made or resized, and only then, file descriptor 2 points at /dev/null."""
    sys.stderr.flush()  # what Python wrote before goes out first
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _runtime() -> Any:
    """ExecuTorch's runtime singleton (its bindings import torch), with the XNNPACK delegate."""
    try:
        with quiet_import():  # "This API is experimental": the public Runtime wraps it
            from executorch.runtime import Runtime
    except ImportError as exc:
        raise RuntimeUnavailable(f"the ExecuTorch runtime is not available here ({exc}): {INSTALL_HINT}") from None
    runtime = Runtime.get()
    if not runtime.backend_registry.is_available(DELEGATE):
        found = ", ".join(runtime.backend_registry.registered_backend_names) or "none"
        raise BackendError(f"this ExecuTorch build has no XNNPACK delegate (it has {found}); {INSTALL_HINT}")
    return runtime


def set_threads(threads: int) -> int:
    """Resize ExecuTorch's process-wide thread pool; returns the size it reports back."""
    from executorch.extension.pybindings import portable_lib

    with _quiet_native_stderr():
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        return int(portable_lib._threadpool_get_thread_count())


def thread_count() -> int:
    """The size of ExecuTorch's thread pool (made on first use, sized to the performance cores)."""
    from executorch.extension.pybindings import portable_lib

    with _quiet_native_stderr():
        return int(portable_lib._threadpool_get_thread_count())


class ExecuTorchBackend(EngineBackend):
    what = "ExecuTorch program"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        info = artifact.manifest.get("compile") or {}
        self.path = artifact.path
        self.precision = info.get("precision", "fp32")
        self.name = f"executorch-xnnpack-{self.precision}"
        # The largest batch per call, so the Predictor splits bigger requests; texts are cut/padded
        # to the program's sequence range.
        self.init_engine(artifact, info.get("shapes") or {})
        runtime = _runtime()
        self.threads = set_threads(threads) if threads else thread_count()
        self.settings = {"delegate": "XNNPACK", "threadpool_threads": self.threads, "precision": self.precision}
        try:
            program = runtime.load_program(str(artifact.file("model")))
            self.method = program.load_method("forward")
        except Exception as exc:  # a damaged file, or a program this runtime cannot read
            from executorch.version import __version__

            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise BackendError(
                f"{artifact.path}: cannot load the ExecuTorch program ({first_line}); it was built with ExecuTorch "
                f"{info.get('executorch')}, this is {__version__}; rebuild it here: {self.rebuild}"
            ) from None
        self._program = program  # the method's memory lives as long as its program
        self.max_cache_len = info.get("max_cache_len")  # a generator's program: its static KV cache

    def decoder(self) -> Any:
        """A generator's program as the decoder ``edgeptm.load`` steps (reset, forward)."""
        if not self.max_cache_len:
            raise BackendError(f"{self.path}: this ExecuTorch program is not a generator's")
        return ExecuTorchDecoder(self.method, int(self.max_cache_len))

    def shape_problem(self, name: str, shape: tuple[int, ...], low: list[int], high: list[int]) -> str:
        """XNNPACK plans memory for the shapes a program is built for: say so, and how to build another."""
        got = "x".join(map(str, shape))
        if low == high:
            built = f"is static at {'x'.join(map(str, low))}"
        else:
            built = "takes " + "x".join(f"{lo}..{hi}" if lo != hi else str(lo) for lo, hi in zip(low, high))
        return (
            f"{self.path}: input '{name}' has shape {got}; this ExecuTorch program {built} (XNNPACK programs "
            f"are planned for the shapes they are built for); build one for this shape, e.g. a batch range with "
            f"--max-batch N or any shape with --shapes {name}:MIN,OPT,MAX: {self.rebuild}"
        )

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        out = self.method.execute([torch.from_numpy(array) for array in self.engine_feed(feed)])
        return {self.output_names[0]: out[0].numpy()}

    def close(self) -> None:
        self.method = None
        self._program = None


class ExecuTorchDecoder:
    """Steps a generator's ``.pte`` program (the interface the Generator drives: reset, forward)."""

    def __init__(self, method: Any, max_cache_len: int) -> None:
        self.method, self.max_cache_len = method, max_cache_len
        self.length = 0
        self.capacity = max_cache_len

    def reset(self, capacity: int) -> None:
        """A new request reaching ``capacity`` positions: the program's cache holds ``max_cache_len``."""
        if capacity > self.max_cache_len:
            raise UsageError(
                f"the request needs {capacity} positions; this ExecuTorch program's KV cache holds "
                f"{self.max_cache_len} (build it with a larger --max-seq-len)"
            )
        self.length, self.capacity = 0, capacity

    def forward(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        import torch

        total = self.length + len(ids)
        if total > self.capacity:
            raise UsageError(f"the request needs {total} positions; its cache holds {self.capacity}")
        out = self.method.execute(
            [torch.tensor([list(ids)], dtype=torch.long), torch.arange(self.length, total, dtype=torch.long)]
        )[0]
        self.length = total
        logits = out[0].float().numpy()
        return logits if all_logits else logits[-1]
