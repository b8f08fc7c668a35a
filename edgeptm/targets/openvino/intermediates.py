"""The tensors an OpenVINO IR computes, by the ONNX names they came from, for ``edgeptm diff``.

OpenVINO's ONNX front end keeps each ONNX tensor's name on the output port that computes it, and
NNCF's INT8 keeps it on the producer (its FakeQuantize nodes come after). Every wanted name found on
an operation's output (not on a Parameter, Constant or Result) is added as a model output, and the
IR is compiled as its manifest asks (the inference precision hint, one stream). Extra outputs keep
the CPU plugin from fusing across those tensors, as ONNX Runtime with its rewrites off does on the
other side: the values are the ones the IR names.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError

SKIPPED = frozenset({"Parameter", "Constant", "Result"})


def tensors(
    artifact: Artifact, names: list[str], feeds: Iterable[dict[str, np.ndarray]], threads: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Per feed, the wanted tensors this IR computes (a subset of ``names``)."""
    from edgeptm.targets.openvino._runtime import error_line, import_openvino, openvino_version

    ov = import_openvino()
    info = artifact.manifest.get("compile") or {}
    core = ov.Core()
    try:
        model = core.read_model(str(artifact.file("model")), str(artifact.file("weights")))
    except Exception as exc:  # OpenVINO raises its own generic RuntimeError
        detail = error_line(exc)
        raise BackendError(f"{artifact.path}: OpenVINO {openvino_version()} cannot read this IR: {detail}") from None
    wanted = set(names)
    ports: dict[str, Any] = {}
    for op in model.get_ops():
        if op.get_type_name() in SKIPPED:
            continue
        for port in op.outputs():
            for name in sorted(wanted & set(port.get_names())):
                ports.setdefault(name, port)
    unique = list({(p.get_node().get_friendly_name(), p.get_index()): p for p in ports.values()}.values())
    if unique:
        model.add_outputs(unique)
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": info.get("inference_precision_hint", "f32"),
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise BackendError(f"{artifact.path}: OpenVINO cannot compile this IR: {error_line(exc)}") from None
    found = {}
    for port in compiled.outputs:
        for name in port.get_names():
            if name in ports:
                found.setdefault(name, port)
    inputs = [port.get_any_name() for port in compiled.inputs]
    request = compiled.create_infer_request()
    for feed in feeds:
        results = request.infer({name: feed[name] for name in inputs if name in feed})
        yield {name: np.array(results[port], copy=True) for name, port in found.items()}
