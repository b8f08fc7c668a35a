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

log = logging.getLogger(__name__)
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _rebuild_command(artifact: Artifact, info: dict[str, Any]) -> str:
    """The command that builds this IR again from its parent (on this machine's OpenVINO)."""
    parent = (artifact.manifest.get("parents") or [{}])[0].get("path", "ONNX_ARTIFACT")
    profile = (artifact.manifest.get("profile") or {}).get("name")
    asked = info.get("precision_asked")
    options = f" --profile {profile}" if profile else f" --target openvino{f' --precision {asked}' if asked else ''}"
    return f"edgeptm compile {parent}{options} --out DIR"


class OpenVinoBackend:
    def __init__(self, artifact: Artifact, threads: int | None = None, core: Any = None) -> None:
        from edgeptm.targets.openvino._runtime import import_openvino, openvino_version

        ov = import_openvino()
        info = artifact.manifest.get("compile") or {}
        if info.get("target") != "openvino":
            raise BackendError(f"{artifact.path}: not an OpenVINO IR (compile target {info.get('target')!r})")
        self.artifact = artifact
        self.threads = threads
        self.input_names = [i["name"] for i in artifact.manifest["io"]["inputs"]]
        self.output_names = [o["name"] for o in artifact.manifest["io"]["outputs"]]
        self.ranges: dict[str, dict[str, list[int]]] = info.get("shapes") or {}
        self.static = bool(info.get("static_shapes"))
        hint = info.get("inference_precision_hint", "f32")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,  # one request at a time: every thread works on it
            "INFERENCE_PRECISION_HINT": hint,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = core or ov.Core()
        self.rebuild = _rebuild_command(artifact, info)
        try:
            model = core.read_model(str(artifact.file("model")), str(artifact.file("weights")))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises its own generic RuntimeError
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
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
        # The largest batch every input accepts, and the sequence lengths: the Predictor fits requests to them.
        batches = [r["max"][0] for r in self.ranges.values()]
        self.max_batch = min(batches) if batches else None
        text = "max_length" in artifact.preprocessing
        sequences = [(r["min"][1], r["max"][1]) for r in self.ranges.values() if text and len(r["min"]) > 1]
        self.sequence_bounds = (max(s[0] for s in sequences), min(s[1] for s in sequences)) if sequences else None

    def _fit(self, name: str, array: np.ndarray) -> np.ndarray:
        """The array as the IR takes it: checked against its shape range; a short batch padded on a static IR."""
        r = self.ranges.get(name)
        if r is None:
            return array
        shape = list(array.shape)
        if self.static and len(shape) == len(r["min"]) and shape[1:] == r["min"][1:] and shape[0] < r["min"][0]:
            pad = np.repeat(array[-1:], r["min"][0] - shape[0], axis=0)  # samples are independent: cut after
            return np.concatenate([array, pad])
        if len(shape) == len(r["min"]) and all(lo <= s <= hi for s, lo, hi in zip(shape, r["min"], r["max"])):
            return array
        if self.static:
            fixed = "x".join(map(str, r["min"]))
            raise BackendError(
                f"input '{name}': shape {'x'.join(map(str, shape))}, but this OpenVINO IR was compiled for the static "
                f"shape {fixed}; feed that shape (the Predictor pads and splits to it), or rebuild with other --shapes "
                f"(or none, for dynamic shapes): {self.rebuild}"
            )
        bounds = ", ".join(f"{lo}..{hi}" for lo, hi in zip(r["min"], r["max"]))
        raise BackendError(
            f"input '{name}': shape {'x'.join(map(str, shape))} is outside the {bounds} this OpenVINO IR was compiled "
            f"for; rebuild with a larger --max-batch/--max-seq-len or --shapes: {self.rebuild}"
        )

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = None
        inputs = {}
        for name in self.input_names:
            array = np.ascontiguousarray(feed[name])
            batch = array.shape[0] if batch is None else batch
            inputs[name] = self._fit(name, array)
        result = self.request.infer(inputs, share_inputs=True)
        return {name: result[port][:batch] for name, port in zip(self.output_names, self._outputs)}

    def close(self) -> None:
        self.request = None
        self.compiled = None
