"""ONNX Runtime backend (CPU execution provider)."""

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


class OrtBackend:
    name = "onnxruntime-cpu"

    def __init__(self, artifact: Artifact, threads: int | None = None, save_optimized_to: str | None = None) -> None:
        path = artifact.file("model")
        self.threads = threads
        # Graph rewrites the exporter found harmful for this model family (see models/text.py).
        hints = (artifact.manifest.get("runtime") or {}).get("onnxruntime") or {}
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads, save_optimized_to),
                providers=["CPUExecutionProvider"],
                disabled_optimizers=hints.get("disabled_optimizers") or None,
            )
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise BackendError(f"{path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0]})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {k: feed[k] for k in self.input_names})
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
