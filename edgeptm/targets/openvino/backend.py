"""OpenVINO backend: runs an IR compiled by ``edgeptm compile --target openvino`` on the CPU plugin.

One compiled model and one infer request, reused: the latency set-up (``PERFORMANCE_HINT=LATENCY``,
one stream, ``threads`` inference threads) and the inference precision the manifest asks for
(f32, or bf16: OpenVINO's own default on BF16 CPUs is bf16, so it is always set). What the plugin
actually runs is read back and becomes the backend's name: ``openvino-int8``, ``openvino-bf16``,
``openvino-fp32`` (a bf16 IR on a CPU without BF16 says ``openvino-fp32``).

A static IR takes one shape: the Predictor pads texts to its sequence length and splits batches to
its batch size (``sequence_bounds``, ``max_batch``), a smaller batch is padded here and cut after;
any other shape is refused with the static shape and how to rebuild.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError
from edgeptm.runtime.engine import EngineBackend

log = logging.getLogger(__name__)
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class OpenVinoBackend(EngineBackend):
    what = "OpenVINO IR"

    def __init__(self, artifact: Artifact, threads: int | None = None, core: Any = None) -> None:
        from edgeptm.targets.openvino._runtime import error_line, import_openvino, openvino_version

        ov = import_openvino()
        info = artifact.manifest.get("compile") or {}
        if info.get("target") != "openvino":
            raise BackendError(f"{artifact.path}: not an OpenVINO IR (compile target {info.get('target')!r})")
        self.artifact = artifact
        self.threads = threads
        self.static = bool(info.get("static_shapes"))
        # Inputs, their ranges, the batch and sequence limits the Predictor fits requests to.
        self.init_engine(artifact, info.get("shapes") or {})
        hint = info.get("inference_precision_hint", "f32")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,  # one request at a time: every thread works on it
            "INFERENCE_PRECISION_HINT": hint,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = core or ov.Core()
        try:
            model = core.read_model(str(artifact.file("model")), str(artifact.file("weights")))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises its own generic RuntimeError
            detail = error_line(exc)
            raise BackendError(
                f"{artifact.path}: OpenVINO {openvino_version()} cannot load this IR (built with OpenVINO "
                f"{info.get('openvino')}): {detail}; rebuild it here: {self.rebuild}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.performance_hint = str(self.compiled.get_property("PERFORMANCE_HINT")).split(".")[-1]
        self.inference_threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        # What this backend runs with, as OpenVINO reports it (benchmark reports can record it).
        self.settings = {
            "device": "CPU",
            "inference_precision": self.inference_precision,
            "inference_threads": self.inference_threads,
            "streams": self.streams,
            "performance_hint": self.performance_hint,
        }
        if hint == "bf16" and self.inference_precision != "bf16":
            log.warning("%s: compiled for bf16, but this CPU runs it in %s", artifact.path, self.inference_precision)
        precision = str(info.get("precision", "fp32"))
        runs = "int8" if precision.startswith("int8") else _PRECISION_NAMES.get(self.inference_precision, "fp32")
        self.name = f"openvino-{runs}"
        self._outputs = [self.compiled.output(name) for name in self.output_names]

    def fit(self, name: str, array: np.ndarray) -> np.ndarray:
        """A short batch on a static IR is padded (samples are independent: ``run`` cuts after)."""
        r = self.ranges.get(name)
        shape = list(array.shape)
        if self.static and r and len(shape) == len(r["min"]) and shape[1:] == r["min"][1:] and shape[0] < r["min"][0]:
            return np.concatenate([array, np.repeat(array[-1:], r["min"][0] - shape[0], axis=0)])
        return array

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = np.shape(feed[self.input_names[0]])[0] if self.input_names and self.input_names[0] in feed else None
        inputs = dict(zip(self.input_names, self.engine_feed(feed)))
        result = self.request.infer(inputs, share_inputs=True)
        return {name: result[port][:batch] for name, port in zip(self.output_names, self._outputs)}

    def close(self) -> None:
        self.request = None
        self.compiled = None
