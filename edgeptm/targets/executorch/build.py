"""ExecuTorch: ``torch.export`` the checkpoint's module, lower it to the XNNPACK delegate and write
a ``.pte`` program: the path to Android, iOS and small ARM boards, where the ExecuTorch C++
runtime, linked into the app without Python, loads the same file.

FP32, or INT8 by PT2E quantization with ExecuTorch's XNNPACKQuantizer: symmetric signed INT8,
per-channel weights; images get static activation scales calibrated on the training sample the
checkpoint carries, text gets dynamic (per-call) activation scales on its Linear layers, the
form XNNPACK runs transformers in. The program is validated against eager PyTorch running the
parent checkpoint before it is published: FP32 within the model's export tolerance, INT8 by top-1
agreement (its logits move by design; mean cosine on stand-in inputs when the checkpoint carries no
validation split) and by accuracy on the labelled split against the parent.

Shapes: XNNPACK programs are memory-planned ahead of time. ExecuTorch 1.5 lowers upper-bounded
dynamic dimensions (checked: a ResNet with a dynamic batch runs any batch up to the bound and
refuses more; a BERT runs dynamic batch and sequence), but a mobile app runs one shape, and a
static program keeps the whole graph in one XNNPACK subgraph (a dynamic batch splits CNNs in two
around the flatten) with the smallest memory plan. So each axis is static at its ``opt`` value
(batch 1; text: min(128, max length) tokens) unless a range was asked for (``--max-batch``,
``--max-seq-len``, ``--shapes``, the profile's ``compile.batch``/``seq_len``): then that axis is
dynamic over the range. The manifest records which.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import Counter
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, UsageError
from edgeptm.targets.executorch._runtime import import_executorch
from edgeptm.profiles import pick
from edgeptm.targets.executorch import DEFAULT_CALIB_SAMPLES, PRECISIONS, SCHEMES, calibrates
from edgeptm.tasks import carried_val_data, get_task

log = logging.getLogger(__name__)

CALIB_BATCH = 32  # calibration inputs per observed call (see _calibration_graph)
DELEGATE = "XnnpackBackend"  # the name the runtime registers the XNNPACK delegate under
# INT8 gates against eager FP32. On the checkpoint's own validation inputs: top-1 agreement only.
# A classifier's logits near a decision boundary swing with any rounding, so cosine would refuse
# good programs; the accuracy on the labelled split (held to --max-accuracy-drop, else the
# profile's quantize.max_accuracy_drop) is the real check, and a program fed the wrong inputs agrees on
# ~1/classes. Without a validation split (an as-is model) the inputs are stand-ins (synthetic
# images, sample texts) on which a 1000-class model's logits are nearly flat, so its top label is
# noise: EfficientNet-Lite0 INT8 agrees with FP32 on 0.83 (ONNX Runtime QDQ) and 0.86 (this
# target) of them, at mean cosine 0.993 for both; there the gate is the mean cosine.
INT8_MIN_TOP1 = 0.90
INT8_MIN_MEAN_COSINE = 0.95


# Activation quantization per task (SCHEMES): static scales from calibration for CNNs (every
# convolution runs INT8 end to end); dynamic per-call scales on the Linear layers for transformers,
# whose LayerNorm/Softmax/GELU stay FP32 either way (static INT8 would add a requantize around each).
def resolve_precision(options: Any) -> str:
    """--precision beats the profile's compile.precision, which beats fp32."""
    section = options.profile.compile if getattr(options.profile, "compile", None) else None
    precision = pick(options.precision, section and section.precision, "fp32")
    if precision == "8da4w":
        raise UsageError("--precision 8da4w (int4 weights, int8 dynamic activations) is for generators' programs")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: ExecuTorch's XNNPACK target builds {', '.join(PRECISIONS)}")
    return precision


def program_shapes(artifact: Artifact, options: Any) -> dict[str, dict[str, Any]]:
    """Per input: the ``min``/``max`` shape the program takes and the shape of its example
    (``example``), with the named axes left dynamic (``dynamic``: axis -> [low, high])."""
    from edgeptm.compile.shapes import shape_ranges

    inputs = artifact.manifest["io"]["inputs"]
    sources = options.shape_sources()
    ranges = shape_ranges(inputs, artifact.preprocessing, **sources)
    asked = {"batch": sources["batch"] is not None, "sequence": sources["seq_len"] is not None}
    for entry in inputs:  # --shapes sizes every axis of the inputs it names (shared axes included)
        if entry["name"] in sources["explicit"]:
            asked.update({axis: True for axis in entry["shape"] if isinstance(axis, str)})
    plans: dict[str, dict[str, Any]] = {}
    for entry in inputs:
        r = ranges[entry["name"]]
        low, high, example, dynamic = [], [], [], {}
        for i, axis in enumerate(entry["shape"]):
            lo, opt, hi = r["min"][i], r["opt"][i], r["max"][i]
            if isinstance(axis, str) and not asked.get(axis):
                lo = hi = opt  # nothing asked: static at the size it is tuned for
            if lo < hi:
                dynamic[axis] = [lo, hi]
                # An example of 1 would be specialised away by torch.export: 2 or more, in range.
                opt = min(max(opt, lo, 2), hi)
            low.append(lo)
            high.append(hi)
            example.append(opt if lo < hi else lo)
        plans[entry["name"]] = {"min": low, "max": high, "example": example, "dynamic": dynamic}
    return plans


def _dims(
    artifact: Artifact, plans: dict[str, dict[str, Any]], override: dict[str, list[int]] | None = None
) -> tuple[dict[int, Any], ...] | None:
    """torch.export Dims for the dynamic axes (inputs sharing an axis share its Dim), or None;
    ``override`` makes the named axes dynamic over other bounds."""
    from torch.export import Dim

    override = override or {}
    if not override and not any(p["dynamic"] for p in plans.values()):
        return None
    dims: dict[str, Any] = {}
    specs = []
    for entry in artifact.manifest["io"]["inputs"]:
        spec = {}
        for i, axis in enumerate(entry["shape"]):
            bounds = None
            if isinstance(axis, str):
                bounds = override.get(axis) or plans[entry["name"]]["dynamic"].get(axis)
            if bounds:
                spec[i] = dims.setdefault(axis, Dim(axis, min=bounds[0], max=bounds[1]))
        specs.append(spec)
    return tuple(specs)


def _encode(preprocessor: Any, items: list[Any], shape: list[int], text: bool) -> dict[str, Any]:
    """A feed of exactly ``shape`` (batch, and sequence for text): items repeat to fill the batch."""
    batch = shape[0]
    items = [items[i % len(items)] for i in range(batch)]
    return preprocessor.encode(items, shape[1] if text else None)


def calibration_inputs(artifact: Artifact, limit: int, path: str | None = None) -> tuple[list[Any], str]:
    """``limit`` calibration inputs (``tasks.draw_calibration``, as for quantize and the other compilers): from ``path``
    when given, else the training sample the checkpoint carries; a UsageError saying what to do
    without either."""
    from edgeptm.tasks import draw_calibration

    inputs, source = draw_calibration(artifact, limit, path)
    if not inputs:
        raise UsageError(
            f"{artifact.path}: --precision int8 calibrates on the training sample a checkpoint carries "
            "(calib_data), and this one carries none (an as-is pretrained model, or its images are not on this "
            "machine); pass --calib PATH (an image folder, or a file with a 'text' column), fine-tune it with "
            "'edgeptm finetune' (which records one), or compile --precision fp32"
        )
    return inputs, source


def _calibration_graph(
    model: Any, program: Any, inputs: list[Any], feed_of: Any, artifact: Artifact, plans: dict[str, dict[str, Any]]
) -> tuple[Any, list[tuple[Any, ...]]]:
    """The graph PT2E observes, and the calibration feeds for it. The observers cost about as much
    per call at batch 1 as at batch 32 (histograms of every activation, min/max of every weight),
    so calibration runs on a copy exported with a dynamic batch, in batches of CALIB_BATCH; the
    quantized module is then re-exported at the program's own shapes. A model that will not export
    with a dynamic batch is observed on the program's graph at its batch size."""
    import torch

    try:
        graph = torch.export.export(
            model, feed_of(inputs[:2] or inputs, 2), dynamic_shapes=_dims(artifact, plans, {"batch": [1, CALIB_BATCH]})
        )
        step = CALIB_BATCH
        feeds = [feed_of(inputs[i : i + step], len(inputs[i : i + step])) for i in range(0, len(inputs), step)]
    except Exception as exc:  # noqa: BLE001 - any export failure: fall back to the program's graph
        log.info("calibrating at the program's batch size (no dynamic-batch export: %s)", str(exc).splitlines()[:1])
        graph, step = program, plans[artifact.manifest["io"]["inputs"][0]["name"]]["example"][0]
        feeds = [feed_of(inputs[i : i + step], step) for i in range(0, len(inputs), step)]
    return graph, feeds


def fold_symmetric_pads(graph_module: Any) -> int:
    """Fold each symmetric zero ``pad`` that only feeds 2-D convolutions into their ``padding``;
    returns how many were folded. TensorFlow-style "same" padding (EfficientNet-Lite, MobileNets
    ported from TF) is an explicit pad before each convolution. ExecuTorch 1.5's XNNPACK partitioner
    takes ``constant_pad_nd`` in FP32 only, so in an INT8 program every pad is dequantize -> pad ->
    quantize around a full activation map: EfficientNet-Lite0 at 224 had 17 pads and 34 conversions,
    and ran slower in INT8 than in FP32. A convolution pads the same zeros itself; asymmetric pads
    (stride-2 "same": one more on the right and bottom) have no such form and stay."""
    import torch

    aten = torch.ops.aten
    folded = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.pad.default, aten.constant_pad_nd.default):
            continue
        if node.target == aten.pad.default:
            mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
            value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
        else:
            mode, value = "constant", node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
        pad = list(node.args[1])
        if mode != "constant" or value not in (None, 0) or len(pad) != 4 or pad[0] != pad[1] or pad[2] != pad[3]:
            continue
        users = list(node.users)
        defaults = [None, [1, 1], [0, 0], [1, 1], 1]  # bias, stride, padding, dilation, groups
        convs = [
            (user, list(user.args) + defaults[len(user.args) - 2 :])
            for user in users
            if user.target == aten.conv2d.default and user.args[0] is node and node not in user.args[1:]
        ]
        if (
            not convs
            or len(convs) != len(users)
            or any(user.kwargs for user in users)
            or any(list(args[4]) != [0, 0] for _, args in convs)
        ):
            continue
        for user, args in convs:
            args[0], args[4] = node.args[0], [pad[2], pad[0]]  # F.pad lists (left, right, top, bottom)
            user.args = tuple(args)
        graph_module.graph.erase_node(node)
        folded += 1
    if folded:
        graph_module.recompile()
    return folded


def _quantizer(config: Any) -> Any:
    """ExecuTorch 1.5's XNNPACKQuantizer with two fixes, both measured on the models here (and
    ``fold_symmetric_pads`` before annotating):

    - ReLU6 (``hardtanh``), the activation of MobileNets and EfficientNet-Lite, is not fused with
      the convolution before it, as ReLU is: the convolution's output gets its own INT8 scale over
      its whole pre-activation range, and ReLU6 then keeps [0, 6] of it (EfficientNet-Lite0: top-1
      agreement with FP32 0.37 on Fashion-MNIST images, against 0.71 for ONNX Runtime's QDQ). Here
      the scale goes on the ReLU6 output, as the quantizer does for conv + ReLU; XNNPACK then fuses
      the clamp into the convolution.
    - Before annotating, it turns every scalar operand of ``add``/``mul`` into a float32 constant,
      which makes integer arithmetic float (BERT's attention mask builds its gather indices as
      ``arange(n) + 0``, and ``aten.index`` then refuses float indices). Only float ``add``/``mul``
      are quantized, so integer ones move to their ``.Scalar`` overloads (the same arithmetic),
      which that pass leaves alone.
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    aten = torch.ops.aten
    scalar_forms = {aten.add.Tensor: aten.add.Scalar, aten.mul.Tensor: aten.mul.Scalar}
    relu6 = (aten.hardtanh.default, aten.hardtanh_.default)
    convolutions = (aten.conv2d.default, aten.conv1d.default, aten.convolution.default)
    key = "quantization_annotation"

    class Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in model.graph.nodes:
                value = node.meta.get("val")
                if (
                    node.op == "call_function"
                    and node.target in scalar_forms
                    and isinstance(value, torch.Tensor)
                    and not value.dtype.is_floating_point
                    and len(node.args) == 2
                    and not isinstance(node.args[1], torch.fx.Node)
                ):
                    node.target = scalar_forms[node.target]
            model.recompile()
            fold_symmetric_pads(model)
            return super().transform_for_annotation(model)

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            for node in model.graph.nodes:
                conv = node.args[0] if node.op == "call_function" and node.target in relu6 else None
                if not isinstance(conv, torch.fx.Node) or conv.target not in convolutions or len(conv.users) != 1:
                    continue
                annotation = conv.meta.get(key)
                if annotation is None or annotation.output_qspec is None:
                    continue
                node.meta[key] = QuantizationAnnotation(output_qspec=annotation.output_qspec, _annotated=True)
                annotation.output_qspec = None
            return model

    return Quantizer().set_global(config)


def quantize_pt2e(program: Any, feeds: list[tuple[Any, ...]], scheme: str) -> Any:
    """PT2E: annotate with the XNNPACK quantizer, observe ``feeds``, convert; returns the
    quantized graph module (re-export it before lowering)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=scheme == "dynamic")
    prepared = prepare_pt2e(program.module(), _quantizer(config))
    for args in feeds:
        prepared(*args)
    return convert_pt2e(prepared)


def delegation(graph_module: Any) -> dict[str, Any]:
    """How much of the lowered graph XNNPACK runs: delegated subgraphs and nodes, and the
    operators left to ExecuTorch's portable kernels (tuple unpacking not counted)."""
    import torch

    subgraphs = delegated = 0
    outside: Counter[str] = Counter()
    call_delegate = torch.ops.higher_order.executorch_call_delegate
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            subgraphs += 1
            lowered = getattr(graph_module, node.target)
            delegated += sum(n.op == "call_function" for n in lowered.original_module.graph.nodes)
        elif node.op == "call_function" and node.target not in (call_delegate, operator.getitem):
            name = getattr(node.target, "__name__", None) or str(node.target)
            outside[name.split(":")[0].strip().removeprefix("<EdgeOpOverload").strip(" >")] += 1
    return {
        "backend": DELEGATE,
        "subgraphs": subgraphs,
        "delegated_nodes": delegated,
        "non_delegated_nodes": sum(outside.values()),
        "non_delegated_ops": dict(sorted(outside.items())),
    }


def _failed(artifact: Artifact, step: str, exc: Exception) -> ExportError:
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    fixes = [line.strip() for line in lines if "Dim(" in line][:3]  # torch.export's suggested ranges
    detail = f"{type(exc).__name__}: {lines[0][:300]}" + (" Suggested: " + "; ".join(fixes) if fixes else "")
    return ExportError(f"{artifact.path}: ExecuTorch {step} failed: {detail}")


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import torch

    from edgeptm.targets.engine import engine_manifest
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    version = import_executorch()
    precision = resolve_precision(options)
    limit = pick(options.calib_samples, None, DEFAULT_CALIB_SAMPLES)
    task = get_task(artifact.task)
    text = artifact.view.text
    names = artifact.view.input_names
    plans = program_shapes(artifact, options)
    scheme = SCHEMES.get(artifact.task, "static")
    if (options.calib or options.calib_samples is not None) and not calibrates(artifact.task, precision):
        why = (
            f"--precision {precision} calibrates nothing"
            if precision != "int8"
            else (f"INT8 {artifact.task} programs scale activations per call (dynamic): there is nothing to calibrate")
        )
        raise UsageError(f"--calib/--calib-samples: {why}")
    if options.max_accuracy_drop is not None and precision == "fp32":
        raise UsageError("--max-accuracy-drop: an FP32 program loses no accuracy to guard (it is for int8)")
    # Static activation scales need calibration data: refused before any work when there is none.
    calib = calibration_inputs(artifact, limit, options.calib) if calibrates(artifact.task, precision) else None

    from edgeptm.targets.executorch.backend import quiet_import

    model = task.torch_model(artifact, for_export=True).eval()  # text: eager attention, fewer ops left out
    preprocessor = preprocessor_for(artifact)
    val = carried_val_data(task, artifact)
    samples = val.inputs if val is not None else preprocessor.sample_inputs(options.validation_samples)
    first = plans[names[0]]

    def feed_of(items: list[Any], batch: int) -> tuple[Any, ...]:
        feed = _encode(preprocessor, items, [batch, *first["example"][1:]], text)
        return tuple(torch.from_numpy(feed[n]) for n in names)

    example = feed_of(list(samples[:8]), first["example"][0])
    dims = _dims(artifact, plans)
    record: dict[str, Any] = {
        "target": "executorch",
        "tool": "torch.export + executorch.exir.to_edge_transform_and_lower(XnnpackPartitioner) + to_executorch",
        "executorch": version,
        "torch": torch.__version__,
        "device": "cpu",
        "precision": precision,
        "static_shapes": dims is None,
        "shapes": {n: {"min": p["min"], "max": p["max"]} for n, p in plans.items()},
        "dynamic_shapes": {n: p["dynamic"] for n, p in plans.items() if p["dynamic"]},
    }
    started = time.perf_counter()
    with quiet_import(keep_warnings=True), torch.inference_mode(False), torch.no_grad():
        try:
            program = torch.export.export(model, example, dynamic_shapes=dims)
        except Exception as exc:  # torch.export errors come from deep inside torch
            raise _failed(artifact, "torch.export", exc) from None
        if precision == "int8":
            quantize_started = time.perf_counter()
            try:
                if calib is not None:
                    graph, feeds = _calibration_graph(model, program, calib[0], feed_of, artifact, plans)
                else:  # dynamic activations: nothing to observe; one call runs the weight observers
                    graph, feeds = program, [example]
                calib_batch = max(len(args[0]) for args in feeds)
                quantized = quantize_pt2e(graph, feeds, scheme)
                program = torch.export.export(quantized, example, dynamic_shapes=dims)
            except Exception as exc:
                raise _failed(artifact, "PT2E quantization (XNNPACKQuantizer)", exc) from None
            record["quantization"] = {
                "method": "PT2E with ExecuTorch's XNNPACKQuantizer: INT8 weights symmetric per output channel; "
                + (
                    "INT8 activations per tensor with static scales (histogram observers)"
                    if scheme == "static"
                    else "Linear inputs quantized per call (dynamic), other operators FP32"
                ),
                "activations": scheme,
                "calibration": (
                    f"{calib[1]}, observed in batches of up to {calib_batch}"
                    if calib is not None
                    else "none needed (dynamic activation scales)"
                ),
                "quantize_seconds": round(time.perf_counter() - quantize_started, 1),
            }
        buffer = lower_to_program(artifact, program, record)
    if record["delegate"]["subgraphs"] == 0:
        raise ExportError(
            f"{artifact.path}: XNNPACK took no part of this model, so the program would run on ExecuTorch's slow "
            f"portable kernels only (operators: {', '.join(record['delegate']['non_delegated_ops']) or 'none'}); "
            "nothing written: compile it for another target ('edgeptm compile --help') or export it to ONNX"
        )
    writer.add("model", "model.pte").write_bytes(buffer)
    record["compile_seconds"] = round(time.perf_counter() - started, 1)
    writer.carry(artifact)
    manifest = engine_manifest(artifact, record)
    manifest["precision"] = precision
    staged = writer.preview("engine", manifest)

    from edgeptm.targets.executorch.backend import ExecuTorchBackend

    with predictor_for(staged, ExecuTorchBackend(staged)) as predictor:
        manifest["validation"], manifest["metrics"] = _validate(
            model, predictor, samples[: options.validation_samples], val, artifact, precision, options
        )
    log.info(
        "compiled %s with ExecuTorch %s (XNNPACK, %s, %s shapes) in %.1f s: %d of %d nodes delegated",
        writer.out,
        version,
        precision,
        "static" if dims is None else "dynamic",
        record["compile_seconds"],
        record["delegate"]["delegated_nodes"],
        record["delegate"]["delegated_nodes"] + record["delegate"]["non_delegated_nodes"],
    )
    return manifest


def lower_to_program(artifact: Artifact, program: Any, record: dict[str, Any]) -> bytes:
    """An exported program lowered to the XNNPACK delegate and serialized (the .pte's bytes); what
    XNNPACK took goes into ``record["delegate"]``. Each step's failure is an ExportError naming it."""
    from edgeptm.targets.executorch.backend import quiet_import

    with quiet_import():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    try:
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    except Exception as exc:
        raise _failed(artifact, "lowering to XNNPACK", exc) from None
    record["delegate"] = delegation(lowered.exported_program().graph_module)
    try:
        return lowered.to_executorch().buffer
    except Exception as exc:
        raise _failed(artifact, "serialization (to_executorch)", exc) from None


def _validate(
    model: Any, predictor: Any, samples: list[Any], val: Any, parent: Artifact, precision: str, options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The program against eager FP32 PyTorch on the validation inputs, then scored on the labelled
    split. FP32: every output within the model's export tolerance. INT8: top-1 agreement (mean
    cosine on stand-in inputs), and the accuracy delta against the parent held to
    --max-accuracy-drop (else the profile's quantize.max_accuracy_drop)."""
    from edgeptm.exporter import compare_with_torch, validate_against_torch
    from edgeptm.metrics import evaluate_predictor
    from edgeptm.quantization import check_accuracy_drop

    what = f"ExecuTorch XNNPACK {precision} program"
    if precision == "fp32":
        atol = float(parent.manifest["model"].get("export_atol") or 1e-3)
        validation, metrics, _ = validate_against_torch(model, predictor, samples, val, atol, what, parent)
        return validation, metrics
    check = compare_with_torch(model, predictor, samples, batch_size=min(16, predictor.batch_size))
    if val is not None:
        gate, measure, limit, on = "min_top1_agreement", "top1_agreement", INT8_MIN_TOP1, "validation samples"
    else:
        gate, measure, limit, on = "min_mean_cosine", "mean_cosine", INT8_MIN_MEAN_COSINE, "stand-in inputs"
    if check[measure] < limit:
        raise ExportError(
            f"{parent.path}: the {what} strays from eager PyTorch: {measure.replace('_', ' ')} {check[measure]:.3f} "
            f"< {limit} on {check['samples']} {on}; nothing written: try more --calib-samples, or --precision fp32"
        )
    validation = {
        **check,
        "gate": {gate: limit},
        "inputs": "the checkpoint's validation split" if val is not None else "stand-in inputs (no validation split)",
        "against": "torch-eager fp32 on cpu (parent checkpoint)",
    }
    metrics: dict[str, Any] = {
        "measured_with": predictor.backend.name,
        "parent_accuracy": parent.metrics.get("accuracy"),
    }
    if val is None:
        metrics["note"] = "no labelled data carried: see 'validation' for agreement with the parent"
        return validation, metrics
    scored = evaluate_predictor(predictor, val.inputs, val.labels)
    metrics.update(accuracy=scored["accuracy"], macro_f1=scored["macro_f1"], val_samples=scored["samples"])
    if metrics["parent_accuracy"] is not None:
        section = getattr(options.profile, "quantize", None)
        max_drop = pick(options.max_accuracy_drop, section and section.max_accuracy_drop, None)
        delta = check_accuracy_drop(
            f"{parent.path}: the {what}",
            metrics["parent_accuracy"],
            scored["accuracy"],
            scored["samples"],
            max_drop,
            "try more --calib-samples, or --precision fp32",
        )
        metrics["accuracy_delta_points"] = round(delta, 2) + 0.0  # not -0.0
        metrics["max_accuracy_drop"] = max_drop
    return validation, metrics


__all__ = [
    "DEFAULT_CALIB_SAMPLES",
    "PRECISIONS",
    "build",
    "calibration_inputs",
    "delegation",
    "import_executorch",
    "program_shapes",
    "quantize_pt2e",
    "resolve_precision",
]
