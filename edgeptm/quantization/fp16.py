"""FP16: weights and activations in half precision, inputs and outputs kept float32 unless asked.

Pays on GPUs and ARM CPUs with FP16 arithmetic; on x86 CPUs ONNX Runtime has few
FP16 kernels and runs it no faster (often slower). Halves the file either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def convert_fp16(source: Path, target: Path, family: Any, settings: dict[str, Any], calibration: Any) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    keep_io = not settings["fp16_io"]
    wrapper = OnnxModel(onnx.load(str(source)))
    wrapper.convert_float_to_float16(keep_io_types=keep_io)
    wrapper.topological_sort()  # the converter appends its input casts after the nodes that read them
    converted = wrapper.model
    onnx.save(converted, str(target))
    onnx.checker.check_model(str(target))
    floats = sum(1 for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    return {
        "tool": "onnxruntime.transformers OnnxModel.convert_float_to_float16",
        "io_types": "float32 (casts at the edges)" if keep_io else "float16",
        "fp16_initializers": floats,
    }
