"""ONNX Runtime backend: the CPU execution provider, or CUDA / TensorRT providers where the
installed onnxruntime has them (onnxruntime-gpu); a provider it lacks is an error that says so."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError


def session_options(threads: int | None, save_optimized_to: str | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if save_optimized_to:  # the graph ONNX Runtime actually runs, after its own rewrites
        options.optimized_model_filepath = save_optimized_to
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # warnings about unused initialisers are noise to users
    return options


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def provider_name(short: str) -> str:
    """``cuda`` -> ``CUDAExecutionProvider``; a missing provider is a BackendError naming what to install."""
    full = PROVIDERS.get(short, short)
    available = ort.get_available_providers()
    if full not in available:
        hint = "; install onnxruntime-gpu on a machine with CUDA" if full != "CPUExecutionProvider" else ""
        raise BackendError(f"ONNX Runtime {ort.__version__} here has no {full} (it has {', '.join(available)}){hint}")
    return full


class OrtBackend:
    name = "onnxruntime-cpu"

    def __init__(
        self,
        artifact: Artifact,
        threads: int | None = None,
        save_optimized_to: str | None = None,
        provider: str | None = None,
    ) -> None:
        path = artifact.file("model")
        self.threads = threads
        chosen = provider_name(provider or "cpu")
        # Nodes a GPU provider does not take run on the CPU provider, as ONNX Runtime intends.
        providers = [chosen] + (["CPUExecutionProvider"] if chosen != "CPUExecutionProvider" else [])
        short = {v: k for k, v in PROVIDERS.items()}.get(chosen, chosen)
        self.name = f"onnxruntime-{short}"
        # Graph rewrites the exporter found harmful for this model family (see models/text.py).
        hints = (artifact.manifest.get("runtime") or {}).get("onnxruntime") or {}
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads, save_optimized_to),
                providers=providers,
                disabled_optimizers=hints.get("disabled_optimizers") or None,
            )
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise BackendError(f"{path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0]})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # What the session runs with (benchmark reports record it beside the figures).
        self.settings = {
            "providers": self.session.get_providers(),
            "intra_op_threads": threads or "onnxruntime default (one per physical core)",
            "inter_op_threads": 1,
            "graph_optimization": "ORT_ENABLE_ALL",
            "disabled_optimizers": hints.get("disabled_optimizers") or [],
        }

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {k: feed[k] for k in self.input_names})
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
