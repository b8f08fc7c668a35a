"""The Backend protocol every runtime implements, and the table that picks one for an artifact.

A backend opens an artifact's model, says which inputs it takes, runs a feed of numpy arrays and
returns numpy outputs. The Predictor and the benchmark harness use nothing else, so a new runtime
is a compile target (``edgeptm.targets``) whose descriptor names its backend.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from edgeptm import trust
from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError, RuntimeUnavailable


class Backend(Protocol):
    name: str  # e.g. "onnxruntime-cpu", "torch-eager"
    input_names: list[str]
    threads: int | None
    # Optional: ``settings``, a dict of what the runtime actually runs with (threads, providers,
    # streams, precision), read back from it where it can say; benchmark rows record it.

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


# Runtimes that run artifacts as they are: name -> (module:class, artifact kind, package to install).
# Engines run on their compile target's backend (edgeptm.targets).
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "torch": ("edgeptm.runtime.torch_backend:TorchBackend", "checkpoint", "torch"),
    "onnxruntime": ("edgeptm.runtime.ort_backend:OrtBackend", "onnx", "onnxruntime"),
}


def backend_names() -> tuple[str, ...]:
    from edgeptm import targets

    return (*RUNTIMES, *targets.names())


def native_code(artifact: Artifact, name: str | None = None) -> list[str]:
    """What native code loading ``artifact`` on its runtime would run (empty for data-only
    artifacts: ONNX, IRs and programs the runtime interprets, checkpoints). The target says which
    of its engines hold native code, never the manifest."""
    from edgeptm import targets

    try:
        name = name or default_backend(artifact)
    except BackendError:
        return []
    target = targets.find(name)
    if target is None or target.native_code is None or artifact.kind != "engine":
        return []
    return target.load("native_code")(artifact)


def default_backend(artifact: Artifact) -> str:
    if artifact.kind == "engine":  # an engine runs on the runtime it was compiled for
        return (artifact.manifest.get("compile") or {}).get("target", "")
    for name, (_, kind, _) in RUNTIMES.items():
        if kind == artifact.kind:
            return name
    raise BackendError(f"{artifact.path}: no runtime for artifacts of kind '{artifact.kind}'")


def open_backend(
    artifact: Artifact,
    name: str | None = None,
    threads: int | None = None,
    provider: str | None = None,
    digest: str | None = None,
) -> Backend:
    """Open ``artifact`` on backend ``name`` (default: its own runtime). ``digest`` pins it: a
    different artifact is refused, and the pinned one's native code is trusted. Artifacts whose
    loading runs native code are refused here, before any of it is mapped, unless trusted."""
    from edgeptm import targets

    name = name or default_backend(artifact)
    target = targets.find(name)
    if name in RUNTIMES:
        spec, kind, package = RUNTIMES[name]
    elif target is not None:
        spec, kind, package = target.backend, "engine", target.install or target.name
    else:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(backend_names())})")
    if artifact.kind != kind:
        raise BackendError(f"{artifact.path}: backend '{name}' cannot run a '{artifact.kind}' artifact")
    if digest is not None:
        trust.pin(artifact, digest)
    native = native_code(artifact, name)
    if native:
        trust.require(artifact, "; ".join(native))
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"backend '{name}' needs {package}, which failed to import ({exc}); pip install {package}"
        ) from None
    if provider is not None and name != "onnxruntime":
        raise BackendError(f"execution provider '{provider}' is for ONNX Runtime; backend '{name}' has none")
    extra = {"provider": provider} if provider is not None else {}
    backend = getattr(module, class_name)(artifact, threads=threads, **extra)
    declared = artifact.view.input_names
    if sorted(backend.input_names) != sorted(declared):  # the manifest describes another model
        backend.close()
        raise BackendError(
            f"{artifact.path}: the manifest's io.inputs ({', '.join(declared)}) are not the model's inputs "
            f"({', '.join(backend.input_names)}); the artifact is inconsistent: rebuild it"
        )
    return backend
