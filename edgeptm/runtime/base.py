"""The Backend protocol every runtime implements, and the table that picks one for an artifact.

A backend opens an artifact's model, says which inputs it takes, runs a feed of numpy arrays and
returns numpy outputs. The Predictor and the benchmark harness use nothing else, so a new runtime
(TensorRT, OpenVINO, ...) is one module and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from edgeptm import trust
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
# Backends whose loading maps native code shipped inside the artifact -> "module:function" that
# lists that code (without loading it). Their artifacts load only when trusted (edgeptm.trust).
NATIVE_CODE: dict[str, str] = {
    "aoti": "edgeptm.runtime.aoti_backend:native_code",
    "tensorrt": "edgeptm.runtime.tensorrt_backend:native_code",
}


def native_code(artifact: Artifact, name: str | None = None) -> list[str]:
    """What native code loading ``artifact`` on its runtime would run (empty for data-only
    artifacts: ONNX, OpenVINO IR, ExecuTorch programs, checkpoints)."""
    try:
        name = name or default_backend(artifact)
    except BackendError:
        return []
    if name not in NATIVE_CODE:
        return []
    module_name, function = NATIVE_CODE[name].split(":")
    return getattr(importlib.import_module(module_name), function)(artifact)


def default_backend(artifact: Artifact) -> str:
    if artifact.kind == "engine":  # an engine runs on the runtime it was compiled for
        return (artifact.manifest.get("compile") or {}).get("target", "")
    try:
        return DEFAULT_FOR_KIND[artifact.kind]
    except KeyError:
        raise BackendError(f"{artifact.path}: no runtime for artifacts of kind '{artifact.kind}'") from None


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
    name = name or default_backend(artifact)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    target, kinds, package = BACKENDS[name]
    if artifact.kind not in kinds:
        raise BackendError(f"{artifact.path}: backend '{name}' cannot run a '{artifact.kind}' artifact")
    if digest is not None:
        trust.pin(artifact, digest)
    native = native_code(artifact, name)
    if native:
        trust.require(artifact, "; ".join(native))
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
    backend = getattr(module, class_name)(artifact, threads=threads, **extra)
    declared = [i["name"] for i in artifact.manifest["io"]["inputs"]]
    if sorted(backend.input_names) != sorted(declared):  # the manifest describes another model
        backend.close()
        raise BackendError(
            f"{artifact.path}: the manifest's io.inputs ({', '.join(declared)}) are not the model's inputs "
            f"({', '.join(backend.input_names)}); the artifact is inconsistent: rebuild it"
        )
    return backend
