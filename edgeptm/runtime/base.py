"""The Backend protocol every runtime implements, and the table that picks one for an artifact.

A backend opens an artifact's model, says which inputs it takes, runs a feed of numpy arrays and
returns numpy outputs. The Predictor and the benchmark harness use nothing else, so a new runtime
(TensorRT, OpenVINO, ...) is one module and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError


class Backend(Protocol):
    name: str  # e.g. "onnxruntime-cpu", "torch-eager"
    input_names: list[str]
    threads: int | None
    # Optional: ``settings``, a dict of what the runtime actually runs with (threads, providers,
    # streams, precision), read back from it where it can say; benchmark rows record it.

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


# backend name -> (module:class, artifact kinds it runs, package that provides the runtime)
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "torch": ("edgeptm.runtime.torch_backend:TorchBackend", ("checkpoint",), "torch"),
    "onnxruntime": ("edgeptm.runtime.ort_backend:OrtBackend", ("onnx",), "onnxruntime"),
    "aoti": ("edgeptm.runtime.aoti_backend:AotiBackend", ("engine",), "torch"),
    "tensorrt": ("edgeptm.runtime.tensorrt_backend:TensorRTBackend", ("engine",), "'edgeptm[tensorrt]'"),
    "openvino": ("edgeptm.runtime.openvino_backend:OpenVinoBackend", ("engine",), "openvino"),
    "executorch": ("edgeptm.runtime.executorch_backend:ExecuTorchBackend", ("engine",), "executorch"),
}
DEFAULT_FOR_KIND = {"checkpoint": "torch", "onnx": "onnxruntime"}


def default_backend(artifact: Artifact) -> str:
    if artifact.kind == "engine":  # an engine runs on the runtime it was compiled for
        return (artifact.manifest.get("compile") or {}).get("target", "")
    try:
        return DEFAULT_FOR_KIND[artifact.kind]
    except KeyError:
        raise BackendError(f"{artifact.path}: no runtime for artifacts of kind '{artifact.kind}'") from None


def open_backend(
    artifact: Artifact, name: str | None = None, threads: int | None = None, provider: str | None = None
) -> Backend:
    name = name or default_backend(artifact)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    target, kinds, package = BACKENDS[name]
    if artifact.kind not in kinds:
        raise BackendError(f"{artifact.path}: backend '{name}' cannot run a '{artifact.kind}' artifact")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend '{name}' needs {package}, which failed to import ({exc}); pip install {package}"
        ) from None
    if provider is not None and name != "onnxruntime":
        raise BackendError(f"execution provider '{provider}' is for ONNX Runtime; backend '{name}' has none")
    extra = {"provider": provider} if provider is not None else {}
    return getattr(module, class_name)(artifact, threads=threads, **extra)
