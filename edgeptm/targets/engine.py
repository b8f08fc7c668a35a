"""What the targets' builds share: the engine manifest, validation against ONNX Runtime, and the
precision an ONNX graph carries. Imported by builds only, never by the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeptm.artifacts import Artifact


def engine_manifest(artifact: Artifact, record: dict[str, Any]) -> dict[str, Any]:
    """What every engine's manifest keeps of its source, plus the target's ``compile`` record."""
    return {
        "task": artifact.task,
        "labels": artifact.labels,
        "model": artifact.manifest["model"],
        "io": artifact.manifest["io"],
        "preprocessing": artifact.preprocessing,
        "precision": artifact.manifest.get("precision", "fp32"),
        "parents": [artifact.as_parent()],
        "compile": record,
    }


def validate_against_onnxruntime(
    parent: Artifact, staged: Artifact, backend: Any, samples: int, min_cosine: float, min_top1: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An engine built from an ONNX artifact against ONNX Runtime running that artifact, on the
    parent's validation inputs (ExportError below the gates), then scored on its labelled split.
    Returns the manifest's ``validation`` and ``metrics`` sections."""
    import numpy as np

    from edgeptm.errors import ExportError
    from edgeptm.metrics import evaluate_predictor, output_agreement
    from edgeptm.runtime.ort_backend import OrtBackend
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.tasks import carried_val_data, get_task

    val = carried_val_data(get_task(parent.task), parent)
    with predictor_for(parent, OrtBackend(parent)) as reference, predictor_for(staged, backend) as engine:
        inputs = (val.inputs if val is not None else reference.preprocessor.sample_inputs(samples))[:samples]
        step = min(16, engine.batch_size)
        expected, got = [], []
        for start in range(0, len(inputs), step):
            feed = engine.encode(inputs[start : start + step])
            expected.append(next(iter(reference.backend.run(feed).values())))
            got.append(next(iter(engine.backend.run(feed).values())))
        check = output_agreement(np.concatenate(expected), np.concatenate(got))
        if check["min_cosine"] < min_cosine or check["top1_agreement"] < min_top1:
            raise ExportError(
                f"{parent.path}: the {backend.name} engine disagrees with ONNX Runtime on {check['samples']} "
                f"validation samples (min cosine {check['min_cosine']:.4f} < {min_cosine} or top-1 agreement "
                f"{check['top1_agreement']:.3f} < {min_top1}); the engine was not published"
            )
        metrics = evaluate_predictor(engine, val.inputs, val.labels) if val is not None else None
    section: dict[str, Any] = {"measured_with": backend.name, "parent_accuracy": parent.metrics.get("accuracy")}
    if metrics is not None:
        section.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], val_samples=metrics["samples"])
        if section["parent_accuracy"] is not None:
            section["accuracy_delta_points"] = round(100 * (metrics["accuracy"] - section["parent_accuracy"]), 2)
    validation = {
        **check,
        "label_agreement": check["top1_agreement"],
        "gate": {"min_cosine": min_cosine, "min_top1_agreement": min_top1},
        "against": "onnxruntime-cpu running the parent ONNX",
    }
    return validation, section


_DYNAMIC_INT8_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear")


def graph_precision(model: Any) -> dict[str, Any]:
    """What precision an ONNX graph carries, read from the graph itself: Q/DQ nodes (INT8), half
    tensors (FP16), or neither (FP32); plus what only some runtimes build: ONNX Runtime's own
    operators, dynamic INT8 nodes, asymmetric (uint8 or non-zero zero point) quantization."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    half = onnx.TensorProto.FLOAT16
    fp16 = any(t.data_type == half for t in graph.initializer) or any(
        v.type.tensor_type.elem_type == half for v in (*graph.input, *graph.output, *graph.value_info)
    )
    constants = {t.name: t for t in graph.initializer}
    asymmetric = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        zero = constants.get(node.input[2])
        if zero is None:
            continue
        values = numpy_helper.to_array(zero)
        if zero.data_type != onnx.TensorProto.INT8 or values.any():
            asymmetric.append(node.name or node.output[0])
    qdq = ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0)
    contrib = sorted({n.op_type for n in graph.node if n.domain == "com.microsoft"})
    return {
        "onnxruntime_ops": contrib,
        "precision": "int8-qdq" if qdq else ("fp16" if fp16 else "fp32"),
        "qdq_nodes": qdq,
        "fp16_tensors": fp16,
        "dynamic_int8_nodes": sum(ops.get(op, 0) for op in _DYNAMIC_INT8_OPS),
        "asymmetric_quantize_nodes": asymmetric,
    }
