"""INT8 static quantization in QDQ form: activation ranges calibrated on real inputs ahead of time.

QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized op) is the form GPU compilers consume
and the form ONNX Runtime's CPU provider turns into QLinear kernels; per-channel weight scales.
Which op types get quantized is the model family's business (models/text.py, models/vision.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QDQ_OP_TYPES = ("QuantizeLinear", "DequantizeLinear")
log = logging.getLogger(__name__)


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


class _FeedReader:
    """onnxruntime's CalibrationDataReader protocol over an iterator of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)
        self.batches = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        if feed is not None:
            self.batches += 1
        return feed

    def rewind(self) -> None:  # the protocol has it; a single pass is all the calibrators use
        raise NotImplementedError


def runtime_quantized_ops(path: Path) -> dict[str, int]:
    """The integer kernels ONNX Runtime's CPU provider actually runs for a QDQ graph (it fuses
    DequantizeLinear -> op -> QuantizeLinear into QLinear ops at load): the proof that the
    quantized ops do run as INT8 here, not as float between conversions."""
    import tempfile

    import onnx

    from edgeptm.runtime.ort_backend import session_options

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        optimized = f"{tmp}/optimized.onnx"
        ort.InferenceSession(
            str(path), sess_options=session_options(None, optimized), providers=["CPUExecutionProvider"]
        )
        graph = onnx.load(optimized, load_external_data=False).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type.startswith(("QLinear", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantize")):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes whose both operands are computed (attention's Q x K^T and P x V), not weights.

    A family that lists MatMul among its static op types means the weight MatMuls (models/text.py's
    recipe was measured on graphs whose attention was one fused op, so no other MatMul existed). On
    the portable graph the attention's own MatMuls are plain MatMuls too. Measured on a fine-tuned
    MiniLM (1,000 Rotten Tomatoes sentences, ONNX Runtime CPU, batch 1, 1 thread): keeping them
    float changed nothing with uint8 activations (-1.4 points either way), lost 4.9 points instead
    of 5.6 with symmetric int8, and ran faster (seq 128: 20.3 ms against 22.3; seq 48: 6.7 against
    7.6): small attention products gain less from INT8 than their Q/DQ nodes cost."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.name and not set(n.input[:2]) & constants]


def quantize_static_int8(
    source: Path, target: Path, family: Any, settings: dict[str, Any], calibration: Any
) -> dict[str, Any]:
    return StaticBuild(source, family, settings, calibration).build(target)


class StaticBuild:
    """Static QDQ builds of one source: pre-processed once, calibrated once, then quantized with any
    set of nodes kept float (``build(target, keep_float)``), which is what quantize's fallback
    searches over (quantization/fallback.py). Its files live beside ``source``, a private copy
    (quantize's private_copy), as do the quantizer's own side files (preprocessed-inferred.onnx):
    the staging directory gets the targets only."""

    def __init__(self, source: Path, family: Any, settings: dict[str, Any], calibration: Any) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # settings["op_types"]: resolved by quantize (the family's, every type as None, or the user's list)
        default = list(family.static_quant_ops) if family.static_quant_ops is not None else None
        self.ops = settings.get("op_types", default)
        self.settings = settings
        self.calibration = calibration
        self.float_path = source.with_name("preprocessed.onnx")
        self.cache = source.with_name("calibration-ranges.json")
        self.batches = 0
        with _quiet_root_logger():
            # Shape inference plus ONNX Runtime's basic rewrites (Conv+BatchNorm folding, constant
            # folding) first, so that the quantizer sees the graph that will actually run.
            quant_pre_process(
                str(source),
                str(self.float_path),
                skip_symbolic_shape=family.ort_model_type is not None,
                auto_merge=True,
            )
        self.family = family
        # Weight MatMuls only, when the op types are named (None: every op, as CNNs want).
        self.excluded = activation_matmuls(self.float_path) if self.ops is not None and "MatMul" in self.ops else []

    def build(self, target: Path, keep_float: Iterable[str] = (), describe: bool = True) -> dict[str, Any]:
        """Quantize to ``target`` with ``keep_float`` (node names of ``float_path``) left float; the
        first build calibrates and caches the ranges, later ones reuse them. ``describe``: return the
        manifest record (it opens the result in ONNX Runtime once), else {}."""
        import onnx
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        settings = self.settings
        excluded = [*self.excluded, *(n for n in keep_float if n not in self.excluded)]
        first = not self.cache.is_file()
        reader = _FeedReader(self.calibration.feeds()) if first else None
        chatter = io.StringIO()  # the histogram calibrators print progress on stdout
        with _quiet_root_logger(), contextlib.redirect_stdout(chatter):
            quantize_static(
                str(self.float_path),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=self.ops,
                nodes_to_exclude=excluded,
                per_channel=settings["per_channel"],
                reduce_range=settings["reduce_range"],
                activation_type=QuantType.QUInt8 if settings["activation_type"] == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=_calibration_method(settings["calibration_method"]),
                calibration_cache_path=str(self.cache),
                extra_options={
                    **self.family.static_extra_options,
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                    # int8 activations are for GPU compilers, which take zero points of 0 only.
                    "ActivationSymmetric": settings["activation_type"] == "int8",
                    "WeightSymmetric": True,
                },
            )
        if reader is not None:
            self.batches = reader.batches
        log.debug("calibration: %s", chatter.getvalue().strip())
        if keep_float:
            read_float_inputs(target, set(keep_float))
        onnx.checker.check_model(str(target))
        return self.describe(target) if describe else {}

    def describe(self, target: Path) -> dict[str, Any]:
        """The manifest's record of a build."""
        import onnx

        graph = onnx.load(str(target), load_external_data=False)
        counts: dict[str, int] = {}
        weight_ops: dict[str, int] = {}
        constants = {t.name for t in graph.graph.initializer}
        # DequantizeLinear of a constant: an INT8 weight, and the op it feeds computes with it.
        int8_weights = {
            n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants
        }
        for node in graph.graph.node:
            if node.op_type in QDQ_OP_TYPES:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
            elif any(i in int8_weights for i in node.input):
                weight_ops[node.op_type] = weight_ops.get(node.op_type, 0) + 1
        settings = self.settings
        return {
            "tool": "onnxruntime.quantization.quantize_static (QDQ)",
            "onnxruntime_cpu_kernels": runtime_quantized_ops(target),
            "format": "QDQ",
            "weight_type": "int8",
            "activation_type": settings["activation_type"],
            "op_types": self.ops or "all the quantizer supports",
            "float_activation_matmuls": len(self.excluded),
            "calibration": {
                "method": settings["calibration_method"],
                "samples": self.calibration.count,
                "batches": self.batches,
                "source": self.calibration.source,
            },
            **{k: v for k, v in settings.items() if k not in ("calibration_method", "activation_type", "op_types")},
            "qdq_nodes": counts,
            "ops_with_int8_weights": weight_ops,
        }


def read_float_inputs(path: Path, nodes: set[str]) -> None:
    """Rewire ``nodes`` to read the float tensors behind their Q/DQ pairs, and drop the pairs left
    unused. ONNX Runtime's ``nodes_to_exclude`` leaves an excluded node's own weights float, but a
    tensor quantized for its other consumers reaches it through the shared DequantizeLinear still
    (MiniLM's key projection reads the Q/DQ'd LayerNorm output the query and value projections
    share): kept float, it would still see INT8 activations."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name not in nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    outputs = {o.name for o in graph.output}
    while True:  # Q/DQ nodes nothing reads any more
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OP_TYPES and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs generic advice on the root logger: silenced around its calls."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
