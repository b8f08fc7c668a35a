"""OpenVINO: an IR (``model.xml`` + ``model.bin``) from an ONNX artifact, for OpenVINO's CPU plugin.

Precision, three ways:

- ``fp32``: the graph as exported, run with ``INFERENCE_PRECISION_HINT=f32``. It must be said: on a
  CPU with BF16 (AVX512_BF16, AMX) OpenVINO's default is to run FP32 models in bf16.
- ``bf16``: the same FP32 IR, run with the bf16 hint. The hint lives in the manifest, not in the
  IR; a CPU without BF16 runs it in f32 and the backend's name says so.
- ``int8``: NNCF post-training quantization of the FP32 model, calibrated on the training sample
  the artifact carries (``model_type=TRANSFORMER`` for text: SmoothQuant, attention kept sane), fed
  at the shape the IR serves. An ONNX artifact that already holds INT8 Q/DQ nodes (``quantize
  --mode static-int8``) is converted as it is: OpenVINO runs Q/DQ graphs as INT8.

Shapes: a static IR when every input's range is one shape (``--shapes input_ids:1x128``, or a
profile with batch [1,1,1] and seq_len [128,128,128]); OpenVINO specialises its kernels to it
(MiniLM seq 128, INT8: ~5.5 ms static against ~7.8 ms dynamic on a 2-core Zen 4). Otherwise the
batch and sequence axes are dynamic within their bounds.

The IR is checked against ONNX Runtime running the parent on its validation inputs, scored on its
labelled split, and (int8, bf16) held to ``--max-accuracy-drop`` (else the profile's
``quantize.max_accuracy_drop``): the
accuracy before and after is in the manifest, as for every quantization.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, UsageError
from edgeptm.targets.openvino._runtime import error_line, import_openvino, openvino_version
from edgeptm.targets.openvino import DEFAULT_CALIB_SAMPLES, PRECISIONS

log = logging.getLogger(__name__)

# The precision OpenVINO is told to run the non-INT8 layers in. int8: f32 around the INT8 layers;
# bf16 there was no faster here (MiniLM INT8 static, seq 64 and 128, interleaved: within 3%) and
# rounds LayerNorm, softmax and the residual sums to 8 mantissa bits.
INFERENCE_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# Validation gates (min cosine, min top-1 agreement) against ONNX Runtime running the parent ONNX
# on its first validation inputs, per precision. fp32 is the same arithmetic in another order
# (~1e-6 relative). For bf16 and INT8 the gate is top-1 agreement alone: a classifier's logits near
# its decision boundary swing direction with any rounding (ONNX Runtime's own dynamic INT8 of the
# demo MiniLM has min cosine -0.95 over 1,000 sentences at 97.7% top-1 agreement), so a cosine gate
# would refuse good engines; the accuracy measured on the labelled split, held to the profile's
# max_accuracy_drop, is the real check. A broken IR (inputs bound wrongly) agrees on ~1/classes.
GATES = {
    "fp32": (0.999, 0.98),
    "bf16": (-1.0, 0.95),
    "int8": (-1.0, 0.90),
}
# An artifact without labelled data (a model used as-is) is checked on synthetic stand-in inputs,
# unlike anything it was calibrated on: there ONNX Runtime's own static INT8 of EfficientNet-Lite0
# agrees with FP32 on 83% of them (1,000 ImageNet classes, low-confidence logits), NNCF's on 73%.
# The gate then only catches a broken engine, and says so in the manifest.
STAND_IN_MIN_TOP1 = {"fp32": 0.98, "bf16": 0.80, "int8": 0.50}


def cpu_supports_bf16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512_BF16 or AMX)."""
    return "BF16" in (core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") or [])


def check_convertible(info: dict[str, Any], where: str, asked: str | None) -> None:
    """Refuse graphs OpenVINO cannot (or should not) take, saying what to export or compile instead.

    ``info`` is ``graph_precision`` of the ONNX graph; ``asked`` the precision asked for
    explicitly (None: from the profile or the default)."""
    if info["onnxruntime_ops"]:
        raise UsageError(
            f"{where}: the graph holds ONNX Runtime's own fused operators ({', '.join(info['onnxruntime_ops'])}), "
            "which OpenVINO's ONNX reader does not know: an export from before exports were portable; export the "
            "checkpoint again (model.onnx then holds standard ONNX operators; --no-optimize also skips ONNX "
            "Runtime's derived graph) and compile that: OpenVINO fuses attention on its own"
        )
    if info["dynamic_int8_nodes"]:
        raise UsageError(
            f"{where}: dynamic INT8 ({info['dynamic_int8_nodes']} MatMulInteger/DynamicQuantizeLinear nodes) is an "
            "ONNX Runtime CPU form; compile the FP32 ONNX artifact with --precision int8 instead (NNCF calibrates "
            "it for OpenVINO), or quantize with --mode static-int8 and compile that"
        )
    if info["qdq_nodes"] and asked in ("fp32", "bf16"):
        raise UsageError(
            f"{where}: the graph is already INT8 (Q/DQ nodes), so --precision {asked} cannot apply; compile its "
            "FP32 parent for fp32 or bf16, or drop --precision to run the Q/DQ graph as INT8"
        )
    if info["fp16_tensors"] and asked == "int8":
        raise UsageError(
            f"{where}: NNCF calibrates FP32 graphs, this one holds float16 tensors; compile the FP32 ONNX "
            "artifact with --precision int8"
        )


def resolve_precision(options: Any) -> str:
    """--precision beats the profile's compile.precision, which beats fp32."""
    from edgeptm.profiles import pick

    section = options.profile.compile if options.profile is not None else None
    precision = pick(options.precision, section and section.precision, "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: OpenVINO builds {', '.join(PRECISIONS)}")
    return precision


def is_static(ranges: dict[str, dict[str, list[int]]]) -> bool:
    return all(r["min"] == r["max"] for r in ranges.values())


def apply_shapes(model: Any, ranges: dict[str, dict[str, list[int]]]) -> dict[str, str]:
    """Reshape the model's inputs to the ranges (static, or dynamic within bounds); returns the
    shape of each input as OpenVINO now sees it."""
    ov = import_openvino()
    shapes = {}
    for port in model.inputs:
        name = port.get_any_name()
        if name not in ranges:
            raise UsageError(f"OpenVINO sees an input '{name}' the manifest does not list ({', '.join(ranges)})")
        r = ranges[name]
        dims = [ov.Dimension(lo, hi) if lo != hi else ov.Dimension(lo) for lo, hi in zip(r["min"], r["max"])]
        shapes[name] = ov.PartialShape(dims)
    model.reshape(shapes)
    return {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs}


def calibration_feeds(
    artifact: Artifact, ranges: dict[str, dict[str, list[int]]], limit: int, calib: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Calibration feeds at the shape the IR serves (each input's ``opt`` shape: the static shape,
    or the batch and sequence the IR is tuned for), drawn from ``calib`` (a folder of images or a
    data file, as quantize's --calib) or else from the training sample the artifact carries."""
    from edgeptm.runtime.preprocess import preprocessor_for
    from edgeptm.tasks import draw_calibration

    inputs, source = draw_calibration(artifact, limit, calib)
    if not inputs:
        raise UsageError(
            f"{artifact.path}: --precision int8 calibrates on the training sample an artifact carries "
            "(calib_data), and this one carries none (a model used as-is); pass --calib PATH (an image folder, "
            "or a file with a 'text' column), compile --precision fp32 or bf16, or quantize --mode static-int8 "
            "--calib PATH and compile that INT8 Q/DQ artifact"
        )
    preprocessor = preprocessor_for(artifact)
    opt = next(iter(ranges.values()))["opt"]
    batch = opt[0]
    text = artifact.view.text
    seq_len = opt[1] if text else None
    feeds = []
    for start in range(0, len(inputs), batch):
        chunk = list(inputs[start : start + batch])
        chunk += [chunk[-1]] * (batch - len(chunk))  # a static batch is always full
        feeds.append(preprocessor.encode(chunk, seq_len))
    shape = "x".join(map(str, next(iter(feeds[0].values())).shape))
    return feeds, f"{source}, fed as {shape}"


@contextlib.contextmanager
def _quiet_nncf() -> Any:
    """NNCF logs to stdout and draws progress bars there; only the CLI prints in edgeptm, so its
    messages go to logging and the bars nowhere."""
    nncf_logger = logging.getLogger("nncf")
    handlers, propagate = nncf_logger.handlers[:], nncf_logger.propagate
    nncf_logger.handlers, nncf_logger.propagate = [], True
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_logger.handlers, nncf_logger.propagate = handlers, propagate


def quantize_int8(
    model: Any, feeds: list[dict[str, Any]], text: bool, control: tuple[list[Any], float] | None = None
) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training INT8 of an OpenVINO model; returns the model and what was done. ``control``:
    labelled validation feeds [(feed, label index)] and the allowed drop in points, for NNCF's accuracy
    control (layers reverted to float, most damaging first, until the drop holds)."""
    with _quiet_nncf():
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

        # CNNs: one activation range per tensor, as ONNX Runtime's QDQ has. NNCF's default for the
        # CPU gives depthwise-convolution inputs one range per channel, fitted so closely to the
        # calibration images that other images clip (EfficientNet-Lite0 calibrated on Fashion-MNIST:
        # mean logit cosine with FP32 0.74 on colour images, 0.99 per tensor) at the same speed.
        advanced = (
            None
            if text
            else AdvancedQuantizationParameters(
                activations_quantization_params=QuantizationParameters(per_channel=False)
            )
        )
        started = time.perf_counter()
        if control is None:
            quantized = nncf.quantize(
                model,
                nncf.Dataset(feeds),
                subset_size=len(feeds),
                model_type=nncf.ModelType.TRANSFORMER if text else None,
                advanced_parameters=advanced,
            )
        else:
            validation, max_drop = control
            quantized = nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(feeds),
                nncf.Dataset(validation),
                _accuracy,
                max_drop=max_drop / 100,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(feeds),
                model_type=nncf.ModelType.TRANSFORMER if text else None,
                advanced_quantization_parameters=advanced,
            )
        seconds = time.perf_counter() - started
    record = {
        "tool": "nncf.quantize (post-training: min-max statistics, fast bias correction)",
        "nncf": nncf.__version__,
        # NNCF's default preset follows the model type: mixed for transformers (symmetric weights,
        # asymmetric activations: GELU and softmax outputs are not centred), performance otherwise.
        "model_type": "transformer (SmoothQuant, attention-aware scopes)" if text else "default",
        "preset": "mixed" if text else "performance",
        "activation_ranges": "NNCF's default for transformers" if text else "per tensor",
        "subset_size": len(feeds),
        "seconds": round(seconds, 1),
    }
    if control is not None:
        record["tool"] = "nncf.quantize_with_accuracy_control (layers reverted to float until the drop holds)"
        record["accuracy_control"] = {"validation_samples": len(control[0]), "max_drop_points": control[1]}
    return quantized, record


def _accuracy(compiled: Any, items: Any) -> float:
    """NNCF's validation function: top-1 accuracy of a compiled model on (feed, label) items."""
    import numpy as np

    output = compiled.outputs[0]
    right = total = 0
    for feed, label in items:
        logits = np.asarray(compiled(feed)[output])
        right += int(logits.reshape(-1, logits.shape[-1]).argmax(-1)[0] == label)
        total += 1
    return right / max(total, 1)


def validation_feeds(
    artifact: Artifact, ranges: dict[str, dict[str, list[int]]], limit: int = 1000
) -> list[tuple[dict[str, Any], int]]:
    """The validation split the artifact carries as (feed, label index) pairs, one sample per feed at
    the IR's ``opt`` shape (a static batch repeats the sample; only its first row is scored)."""
    from edgeptm.runtime.preprocess import preprocessor_for
    from edgeptm.tasks import carried_val_data, get_task

    data = carried_val_data(get_task(artifact.task), artifact)
    if data is None:
        raise UsageError(
            f"{artifact.path}: --fallback auto measures accuracy on the validation split an artifact carries, "
            "and this one carries none"
        )
    preprocessor = preprocessor_for(artifact)
    opt = next(iter(ranges.values()))["opt"]
    seq_len = opt[1] if artifact.view.text else None
    index = {name: i for i, name in enumerate(artifact.labels)}
    return [
        (preprocessor.encode([x] * opt[0], seq_len), index[label])
        for x, label in list(zip(data.inputs, data.labels))[:limit]
    ]


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import onnx

    from edgeptm.compile.shapes import shape_ranges
    from edgeptm.targets.engine import engine_manifest, graph_precision, validate_against_onnxruntime
    from edgeptm.profiles import pick
    from edgeptm.quantization import check_accuracy_drop
    from edgeptm.tasks import carried_val_data, get_task

    model_path = artifact.file("model")
    info = graph_precision(onnx.load(str(model_path), load_external_data=False))
    check_convertible(info, str(artifact.path), options.precision)
    precision = "int8" if info["qdq_nodes"] else resolve_precision(options)
    from_qdq = bool(info["qdq_nodes"])
    if options.settings.fallback == "auto" and (from_qdq or precision != "int8"):
        raise UsageError("--fallback auto: for --precision int8 from an FP32 graph (NNCF's accuracy control)")
    if (options.calib or options.calib_samples is not None) and (from_qdq or precision != "int8"):
        why = (
            "this graph is already INT8 (Q/DQ), calibrated when it was quantized"
            if from_qdq
            else f"--precision {precision} calibrates nothing"
        )
        raise UsageError(f"--calib/--calib-samples: {why}")
    if options.max_accuracy_drop is not None and precision == "fp32":
        raise UsageError("--max-accuracy-drop: an FP32 IR loses no accuracy to guard (it is for int8 and bf16)")
    ranges = shape_ranges(artifact.manifest["io"]["inputs"], artifact.preprocessing, **options.shape_sources())
    static = is_static(ranges)
    section = options.profile.quantize if options.profile is not None else None
    calib_samples = pick(options.calib_samples, section and section.calibration_samples, DEFAULT_CALIB_SAMPLES)

    ov = import_openvino()  # everything above runs without OpenVINO: errors in the request come first
    core = ov.Core()
    if precision == "bf16" and not cpu_supports_bf16(core):
        name = core.get_property("CPU", "FULL_DEVICE_NAME")
        raise UsageError(
            f"--precision bf16: this CPU ({name}) has no native bf16 (AVX512_BF16 or AMX), so OpenVINO would run "
            "f32 and call it bf16; compile --precision fp32 or int8 here, or build and run on a CPU with "
            "avx512_bf16/amx_bf16 (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later)"
        )
    feeds, calibration = None, None
    if precision == "int8" and not from_qdq:
        feeds, source = calibration_feeds(artifact, ranges, calib_samples, options.calib)
        calibration = {"source": source}

    started = time.perf_counter()
    try:
        model = ov.convert_model(str(model_path))
        shapes = apply_shapes(model, ranges)
    except UsageError:
        raise
    except Exception as exc:  # OpenVINO's frontends raise their own (generic) errors
        detail = error_line(exc)
        raise ExportError(
            f"{artifact.path}: OpenVINO {openvino_version()} cannot convert this ONNX model: {detail}"
        ) from None
    convert_seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "target": "openvino",
        "tool": "openvino.convert_model + save_model" + (" + nncf.quantize" if feeds is not None else ""),
        "openvino": openvino_version(),
        "device": "CPU",
        "precision_asked": options.precision or (options.profile and options.profile.compile.precision) or None,
        "precision": "int8 (from Q/DQ)" if from_qdq else ("int8 (NNCF)" if precision == "int8" else precision),
        "inference_precision_hint": INFERENCE_HINT[precision],
        "static_shapes": static,
        "shapes": ranges,
        "ir_input_shapes": shapes,
        "graph": {k: v for k, v in info.items() if k not in ("asymmetric_quantize_nodes", "onnxruntime_ops")},
        "convert_seconds": round(convert_seconds, 1),
    }
    if feeds is not None:
        control = None
        if options.settings.fallback == "auto":
            max_drop = pick(options.max_accuracy_drop, section and section.max_accuracy_drop, None)
            if max_drop is None:
                raise UsageError("--fallback auto needs an accuracy budget: pass --max-accuracy-drop (points)")
            control = (validation_feeds(artifact, ranges), max_drop)
        model, quantization = quantize_int8(model, feeds, artifact.view.text, control)
        record["nncf"] = quantization.pop("nncf")
        record["calibration"] = {**calibration, **quantization}
    xml = writer.add("model", "model.xml")
    writer.add("weights", "model.bin")
    # FP32 weights stay FP32: save_model would halve them to FP16 by default (the CPU plugin
    # converts back at load time, but the values would already be rounded).
    ov.save_model(model, str(xml), compress_to_fp16=False)
    record["compile_seconds"] = round(time.perf_counter() - started, 1)
    writer.carry(artifact)
    manifest = engine_manifest(artifact, record)
    if not from_qdq:
        manifest["precision"] = precision
    staged = writer.preview("engine", manifest)

    from edgeptm.targets.openvino.backend import OpenVinoBackend

    backend = OpenVinoBackend(staged, core=core)
    # What the plugin runs, read back from the compiled model (the hint is a request, not a promise).
    record["inference_precision"] = backend.inference_precision
    min_cosine, min_top1 = GATES[precision]
    labelled = carried_val_data(get_task(artifact.task), artifact) is not None
    if not labelled:
        min_top1 = STAND_IN_MIN_TOP1[precision]
    manifest["validation"], manifest["metrics"] = validate_against_onnxruntime(
        artifact, staged, backend, options.validation_samples, min_cosine, min_top1
    )
    if not labelled:
        manifest["validation"]["inputs"] = "synthetic stand-ins (no labelled data): the gate only catches a broken IR"
    metrics = manifest["metrics"]
    if precision != "fp32" and metrics.get("accuracy") is not None and metrics.get("parent_accuracy") is not None:
        max_drop = pick(options.max_accuracy_drop, section and section.max_accuracy_drop, None)
        if from_qdq:
            hint = "quantize the FP32 parent again (more --calib-samples), or compile it with --precision int8 (NNCF)"
        elif precision == "int8":
            hint = "try more --calib-samples, or --precision bf16"
        else:
            hint = "try --precision fp32"
        check_accuracy_drop(
            f"{artifact.path}: OpenVINO {record['precision']}",
            metrics["parent_accuracy"],
            metrics["accuracy"],
            metrics["val_samples"],
            max_drop,
            hint,
        )
        metrics["max_accuracy_drop"] = max_drop
    log.info(
        "built %s with OpenVINO %s (%s, %s shapes) in %.1f s",
        writer.out,
        record["openvino"],
        record["precision"],
        "static" if static else "dynamic",
        record["compile_seconds"],
    )
    return manifest


__all__ = [
    "GATES",
    "INFERENCE_HINT",
    "PRECISIONS",
    "build",
    "check_convertible",
    "cpu_supports_bf16",
    "import_openvino",
    "openvino_version",
]
