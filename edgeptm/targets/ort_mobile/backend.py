"""ONNX Runtime Mobile backend: runs the ``.ort`` file ``compile --target ort-mobile`` wrote, with
the onnxruntime package here (the full build loads the ORT format; a phone's reduced build loads
the same file). CPU execution provider, the graph as saved (its optimizations are in the file)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError
from edgeptm.runtime.engine import EngineBackend


class OrtMobileBackend(EngineBackend):
    what = "ORT format model"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        import onnxruntime as ort

        info = artifact.manifest.get("compile") or {}
        if info.get("target") != "ort-mobile":
            raise BackendError(f"{artifact.path}: not an ORT format engine (compile target {info.get('target')!r})")
        path = artifact.file("model")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.load_model_format", "ORT")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise BackendError(
                f"{path}: ONNX Runtime cannot load this ORT format model ({str(exc).splitlines()[0]})"
            ) from None
        self.threads = threads
        self.name = f"onnxruntime-mobile-{info.get('platform', 'arm')}"
        self.init_engine(artifact, None)  # the ORT format keeps the graph's dynamic axes: no ranges to check
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.settings: dict[str, Any] = {
            "providers": self.session.get_providers(),
            "intra_op_threads": threads or "onnxruntime default (one per physical core)",
            "format": "ORT",
            "optimized_for": info.get("platform"),
        }

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, dict(zip(self.input_names, self.engine_feed(feed))))
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
