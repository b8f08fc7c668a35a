"""TensorRT backend: runs a serialized engine from ``edgeptm compile --target tensorrt``.

Inputs and outputs are bound by name (TensorRT 10/11 named-tensor API), their memory is torch
CUDA tensors, and ``run`` returns only once the engine's stream has finished, so host timing
around it is honest. With ``cuda_graph`` each input shape's launch is captured once into a CUDA
graph and replayed (fewer launch overheads for small batches).

The engine is refused before deserializing when it was built for another TensorRT version or GPU
architecture: ``check_compatible`` (no TensorRT needed) says why and gives the rebuild command.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgeptm import trust
from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError
from edgeptm.runtime.engine import EngineBackend, rebuild_command

log = logging.getLogger(__name__)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(version).split(".")[:3] if p.isdigit())


def _cc(value: str) -> tuple[int, int]:
    high, _, low = str(value).partition(".")
    return int(high), int(low or 0)


def check_compatible(artifact: Artifact, tensorrt_version: str, gpu: dict[str, Any]) -> None:
    """Refuse an engine this TensorRT and GPU cannot run (TensorRT's own error is a crash or a
    cryptic deserialization failure). Version-compatible engines run on the same or a later
    TensorRT of the same major version; hardware-compatible ones on any Ampere or later GPU."""
    info = artifact.manifest.get("compile") or {}
    built, here = info.get("tensorrt", "?"), tensorrt_version
    why = None
    if info.get("version_compatible"):
        if _version_tuple(built)[:1] != _version_tuple(here)[:1] or _version_tuple(here) < _version_tuple(built):
            first = built.split(".")[0]
            why = f"built version-compatible with TensorRT {built} (runs on {first}.x >= {built}), this is {here}"
    elif _version_tuple(built) != _version_tuple(here):
        why = f"built with TensorRT {built}, this is TensorRT {here} (an engine runs only on the version that built it)"
    level = info.get("hardware_compatibility", "none")
    built_cc, here_cc = info.get("compute_capability", "?"), gpu["compute_capability"]
    if why is None and level == "ampere_plus":
        if _cc(here_cc) < (8, 0):
            why = f"built for Ampere and later GPUs, this {gpu['name']} has compute capability {here_cc}"
    elif why is None and _cc(built_cc) != _cc(here_cc):
        why = (
            f"built for compute capability {built_cc} ({info.get('gpu', '?')}), this {gpu['name']} is {here_cc} "
            "(an engine is tuned for one GPU architecture)"
        )
    if why:
        raise BackendError(f"{artifact.path}: TensorRT engine {why}; rebuild it here: {rebuild_command(artifact)}")


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT8: torch.int8,
        trt.DataType.BOOL: torch.bool,
    }
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise BackendError(f"TensorRT tensor type {dtype} has no torch equivalent here")
    return table[dtype]


def native_code(artifact: Artifact) -> list[str]:
    """A plan is deserialized by TensorRT into kernels; a version-compatible one also carries a lean
    runtime that runs as host code, and plans may embed plugin code."""
    info = artifact.manifest.get("compile") or {}
    what = "TensorRT plan " + artifact.file("model").name
    if info.get("version_compatible"):
        what += " (version-compatible: carries a lean TensorRT runtime, run as host code)"
    return [what]


class TensorRTBackend(EngineBackend):
    what = "engine"

    def __init__(self, artifact: Artifact, threads: int | None = None, cuda_graph: bool | None = None) -> None:
        # Before TensorRT reads a byte of the plan: it may carry host code.
        trusted = trust.require(artifact, "; ".join(native_code(artifact)))
        import torch

        from edgeptm.targets.tensorrt._runtime import _logger, gpu_identity, import_tensorrt

        trt = import_tensorrt()
        gpu = gpu_identity()
        check_compatible(artifact, trt.__version__, gpu)
        info = artifact.manifest.get("compile") or {}
        self.threads = threads
        self._trt, self._torch = trt, torch
        self._logger = _logger(trt)
        self.runtime = trt.Runtime(self._logger)
        if info.get("version_compatible") and trusted:
            # A version-compatible plan carries its lean runtime: host code, allowed for trusted plans only.
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(artifact.file("model").read_bytes())
        if self.engine is None:
            detail = "; ".join(self._logger.errors[-2:]) or "no detail"
            raise BackendError(f"{artifact.path}: TensorRT cannot deserialize this engine ({detail})")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        profile = {  # (min, opt, max) of optimization profile 0, read from the engine itself
            n: [list(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in names if is_input[n]
        }
        self.init_engine(artifact, {n: {"min": p[0], "max": p[2]} for n, p in profile.items()})
        self.input_names = [n for n in names if is_input[n]]  # the engine's binding order
        self.output_names = [n for n in names if not is_input[n]]
        self.use_graph = info.get("cuda_graph", False) if cuda_graph is None else cuda_graph
        self.name = "tensorrt-cudagraph" if self.use_graph else "tensorrt"
        self._graph: tuple[tuple, Any, dict[str, Any], dict[str, Any]] | None = None

    def shape_problem(self, name: str, shape: tuple[int, ...], low: list[int], high: list[int]) -> str:
        show = lambda s: "x".join(map(str, s))  # noqa: E731
        return (
            f"input '{name}': shape {show(shape)} is outside the engine's optimization profile "
            f"{show(low)} .. {show(high)}; rebuild with wider --shapes (or --max-batch/--max-seq-len): {self.rebuild}"
        )

    def _bind(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        torch = self._torch
        inputs = {}
        for name, array in zip(self.input_names, self.engine_feed(feed)):
            tensor = torch.from_numpy(array).to("cuda", dtype=self.dtypes[name], non_blocking=False)
            if not self.context.set_input_shape(name, tuple(array.shape)):
                raise BackendError(f"input '{name}': TensorRT refused shape {array.shape}")
            self.context.set_tensor_address(name, tensor.data_ptr())
            inputs[name] = tensor
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        return inputs, outputs

    def _launch(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            detail = "; ".join(self._logger.errors[-2:]) or "no detail"
            raise BackendError(f"TensorRT execution failed ({detail})")

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            if not self.use_graph:
                _, outputs = self._bind(feed)
                self._launch()
            else:
                outputs = self._replay(feed)
        self.stream.synchronize()
        return {name: tensor.float().cpu().numpy() for name, tensor in outputs.items()}

    def _replay(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """The launch for the current input shape captured once into a CUDA graph over static
        buffers, after one ordinary launch (TensorRT sets up shape-dependent state on the first
        enqueue, which must not be captured); a new shape recaptures."""
        torch = self._torch
        key = tuple(tuple(np.shape(feed[n])) for n in self.input_names)
        if self._graph is None or self._graph[0] != key:
            self._graph = None
            inputs, outputs = self._bind(feed)
            self._launch()
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._launch()
            self._graph = (key, graph, inputs, outputs)
        _, graph, inputs, outputs = self._graph
        for name in self.input_names:
            inputs[name].copy_(torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.dtypes[name]))
        graph.replay()
        return outputs

    def close(self) -> None:
        self._graph = None
        self.context = self.engine = self.runtime = None
