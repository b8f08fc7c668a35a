"""ONNX Runtime backend: the CPU execution provider, or CUDA / TensorRT providers where the
installed onnxruntime has them (onnxruntime-gpu); a provider it lacks is an error that says so.

An ONNX artifact's ``model`` file holds standard ONNX operators only, for every runtime. Beside it,
an artifact may hold ONNX Runtime's own rewrite of that graph (``ort-model``: the transformer
optimizer's fused Attention, BiasGelu, ... in the com.microsoft domain), recorded under the
manifest's ``derived`` section with the providers it is for. This backend runs that file where its
provider is listed (CPU, CUDA) and the portable ``model`` otherwise (TensorRT's provider fuses the
standard graph itself), and for artifacts made before the derived file existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError

# The derived graph's role and file name in an artifact, and the providers whose kernels it is for:
# the transformer optimizer's CPU fusions (opt_level 0) have CPU and CUDA kernels; TensorRT's
# provider would hand the contrib ops back to CUDA, so it gets the standard graph.
ORT_MODEL = "ort-model"
ORT_MODEL_PATH = "model.onnxruntime.onnx"
ORT_MODEL_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider")


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


def derived_record(artifact: Artifact) -> dict[str, Any] | None:
    """The manifest's record of the artifact's ONNX Runtime graph (None: the artifact has none)."""
    if not artifact.has_file(ORT_MODEL):
        return None
    return ((artifact.manifest.get("derived") or {}).get(ORT_MODEL)) or None


def graph_role(artifact: Artifact, provider: str = "CPUExecutionProvider") -> str:
    """Which file ONNX Runtime runs with ``provider``: the derived ``ort-model`` where it is
    recorded for that provider, else the portable ``model``."""
    record = derived_record(artifact)
    return ORT_MODEL if record is not None and provider in record.get("providers", ()) else "model"


class OrtBackend:
    name = "onnxruntime-cpu"

    def __init__(
        self,
        artifact: Artifact,
        threads: int | None = None,
        save_optimized_to: str | None = None,
        provider: str | None = None,
        graph: str | None = None,
    ) -> None:
        """``graph``: the file role to run (``model`` or ``ort-model``); default: the one for the provider."""
        self.threads = threads
        chosen = provider_name(provider or "cpu")
        self.graph = graph or graph_role(artifact, chosen)
        path = artifact.file(self.graph)
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
            "graph": f"{Path(path).name} ({self.graph})",
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
