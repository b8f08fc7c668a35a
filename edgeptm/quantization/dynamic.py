"""INT8 dynamic quantization with ONNX Runtime: INT8 weights, activations quantized per call.

Pays for transformer MatMuls on CPUs with INT8 dot products (AVX-512 VNNI, AVX-VNNI, ARM dotprod);
it makes convolutional networks slower (use static QDQ there).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from edgeptm.models.text import EncoderFamily

# What the quantizer leaves in the graph, counted into the manifest.
QUANTIZED_OP_TYPES = (
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QAttention",
    "QEmbedLayerNormalization",
    "DynamicQuantizeLinear",
    "DequantizeLinear",
    "QGemm",
)


def quantize_dynamic_int8(
    source: Path, target: Path, family: EncoderFamily, settings: dict[str, Any], calibration: Any = None
) -> dict[str, Any]:
    return DynamicBuild(source, family, settings).build(target)


class DynamicBuild:
    """Dynamic INT8 builds of one source with any set of nodes kept float (quantize's fallback)."""

    def __init__(self, source: Path, family: EncoderFamily, settings: dict[str, Any], calibration: Any = None) -> None:
        self.float_path = source
        # settings["op_types"]: resolved by quantize (the family's, every type as None, or the user's list)
        self.ops = settings.get("op_types", list(family.dynamic_quant_ops))
        self.settings = settings

    def build(self, target: Path, keep_float: Iterable[str] = (), describe: bool = True) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization import quantize_dynamic as _quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs generic advice on the root logger
        try:
            _quantize_dynamic(
                self.float_path,
                target,
                op_types_to_quantize=self.ops,
                nodes_to_exclude=list(keep_float),
                per_channel=self.settings["per_channel"],
                reduce_range=self.settings["reduce_range"],
                weight_type=QuantType.QInt8,
                # Graphs fused by the transformer optimizer lose some type info; tell the quantizer the
                # default. MatMulConstBOnly: only weight MatMuls (activation x activation stays float).
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
            )
        finally:
            root.setLevel(level)
        onnx.checker.check_model(str(target))
        return self.describe(target)

    def describe(self, target: Path) -> dict[str, Any]:
        """The manifest's record of a build."""
        import onnx

        graph = onnx.load(str(target), load_external_data=False)
        counts: dict[str, int] = {}
        for node in graph.graph.node:
            if node.op_type in QUANTIZED_OP_TYPES:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return {
            "tool": "onnxruntime.quantization.quantize_dynamic",
            "weight_type": "int8",
            "activation_type": "uint8 (dynamic, per call)",
            "op_types": self.ops or "all the quantizer supports",
            **{k: v for k, v in self.settings.items() if k != "op_types"},
            "quantized_nodes": counts,
        }
