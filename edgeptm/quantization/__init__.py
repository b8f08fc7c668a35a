"""Quantization: produce a lower-precision ONNX artifact and measure what it cost in accuracy.

Precision is written into the graph once, here, for every runtime that reads it (INT8 as QDQ
nodes, FP16 as half tensors). Each mode is a function
``(source model path, target path, family, settings, calibration) -> record``, given a private
copy of the source model (it may write beside it, as ONNX Runtime's quantizer does); the accuracy guard
around it is common to all modes: the parent and the quantized model are scored on the same
validation data in the same run, the delta goes into the manifest, and a drop beyond
``max_accuracy_drop`` fails the stage before anything is written.

Which graph: every mode quantizes the source's portable ``model`` (standard ONNX operators), so
the result's ``model`` is standard ONNX too (static INT8: QuantizeLinear/DequantizeLinear around
standard ops, the form compile targets read). Where the source also holds ONNX Runtime's fused
graph (``ort-model``, see exporter.py), a mode in ``DERIVES_ORT_MODEL`` applies itself to that one
as well, giving the result's ``ort-model``, which ONNX Runtime runs; both graphs answer to the
accuracy guard, and ``metrics`` is the graph ONNX Runtime serves. Measured on MiniLM
(benchmarks/PORTABLE_ONNX.md): dynamic INT8 of the fused graph (QAttention, ...) is what ONNX
Runtime ran before, byte for byte; dynamic INT8 of the portable graph alone was as fast with one
thread but 2-7% slower with two, so dynamic INT8 keeps both. FP16 of the fused graph is faster
than FP16 of the portable one. Static QDQ of the portable graph is 1.8x faster than of the fused
one (its attention projections run INT8 too), so static INT8 writes one graph.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgeptm.artifacts import Artifact, ArtifactWriter, sha256_file
from edgeptm.sources import open_stage_source
from edgeptm.errors import AccuracyError, ArtifactError, UsageError
from edgeptm.profiles import Profile, pick, resolve_profile
from edgeptm.quantization.dynamic import quantize_dynamic_int8
from edgeptm.quantization.fp16 import convert_fp16
from edgeptm.quantization.static import CALIBRATION_METHODS, quantize_static_int8
from edgeptm.tasks import carried_val_data, get_task

log = logging.getLogger(__name__)

# mode -> (function, the precision the manifest records)
MODES: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "dynamic-int8": (quantize_dynamic_int8, "int8-dynamic"),
    "static-int8": (quantize_static_int8, "int8-static-qdq"),
    "fp16": (convert_fp16, "fp16"),
}
# Modes that also convert the source's ONNX Runtime graph (ort-model) into the result's: see above.
DERIVES_ORT_MODEL = ("dynamic-int8", "fp16")
ACTIVATION_TYPES = ("uint8", "int8")
# Image models default to static QDQ (dynamic INT8 makes convolutions slower); text to dynamic.
DEFAULT_MODE = {"text-classification": "dynamic-int8", "image-classification": "static-int8"}


@dataclass
class QuantizeOptions:
    mode: str | None = None
    val: str | None = None  # labelled data to score on; default: the split the artifact carries
    text_column: str = "text"
    label_column: str = "label"
    max_accuracy_drop: float | None = None  # in accuracy points (1.0 = one percentage point)
    per_channel: bool | None = None
    reduce_range: bool | None = None
    calib: str | None = None  # static-int8: calibration inputs (default: the training sample carried)
    calib_samples: int | None = None  # static-int8: how many calibration inputs to use
    calib_method: str | None = None  # static-int8: minmax | entropy | percentile
    fp16_io: bool = False  # fp16: float16 inputs/outputs too (default: float32 at the edges)
    activations: str | None = None  # static-int8: uint8 (ONNX Runtime CPU) | int8 (symmetric, for GPU compilers)
    profile: str | Profile | None = None
    # generators (edgeptm.quantization.generative): weight-only int4 / int8
    block_size: int | None = None  # weights per block and scale (default 32)
    weight_method: str | None = None  # auto | rtn | search | imatrix | gptq
    embedding_bits: int | None = None  # the embedding / LM head table: 4, 8 (default) or 32 (float)
    accuracy_level: int | None = None  # MatMulNBits compute: 4 = int8 activations (default), 0 = float
    symmetric: bool = False  # int4: blocks without zero points (default: asymmetric, uint8 zero points)
    grid_offsets: str | None = None  # int4 weights already on a 4-bit grid: none | widest (default) | all
    embedding_8bit_rows: int | None = None  # a 4-bit tied table: its first N token rows at 8 bits (default 2048)
    max_perplexity_increase: float | None = None  # percent; refuse a result beyond it
    # INT8 (static and dynamic): which op types may be quantized, and the fallback search
    op_types: str | None = None  # None: the family's recipe; "all": every type; else "MatMul,Gemm,..."
    fallback: str | None = None  # "auto": keep float the nodes INT8 costs most (quantization/fallback.py)


@dataclass
class Calibration:
    """Calibration inputs, fed one at a time through the artifact's own preprocessing.

    One input per feed, texts padded to the model's max length: the histogram calibrators
    (entropy, percentile) stack every feed of a tensor, so all feeds must have one shape.
    """

    inputs: list[Any]
    preprocessor: Any
    source: str

    @property
    def count(self) -> int:
        return len(self.inputs)

    def feeds(self) -> Iterator[dict[str, Any]]:
        fixed = getattr(self.preprocessor, "max_length", None)
        for item in self.inputs:
            yield self.preprocessor.encode([item], fixed)


def _calibration(artifact: Artifact, options: QuantizeOptions, section: Any) -> Calibration:
    from edgeptm.runtime.preprocess import preprocessor_for
    from edgeptm.tasks import draw_calibration

    limit = pick(options.calib_samples, section and section.calibration_samples, 256)
    inputs, source = draw_calibration(artifact, limit, options.calib)
    if not inputs:
        raise UsageError(
            f"{artifact.path}: static-int8 needs calibration data and this artifact carries none: "
            "pass --calib PATH (images: a folder or a path,label list; text: a file with a 'text' column)"
        )
    return Calibration(inputs, preprocessor_for(artifact), source)


def _validation_data(artifact: Artifact, task: Any, options: QuantizeOptions) -> tuple[Any, str] | None:
    if options.val:
        data, how = task.read_data(options.val, options), f"--val {options.val}"
    else:
        data, how = carried_val_data(task, artifact), "validation split carried by the artifact"
        if data is None:
            return None
    data.check_labels(artifact.labels)
    return data, how


# What to try when a mode loses too much accuracy.
RETRY_HINTS = {
    "dynamic-int8": "try --mode fp16",
    "static-int8": "try more --calib-samples, --calib-method entropy or percentile, or --mode fp16",
    "fp16": "ship the FP32 export",
}


def check_accuracy_drop(
    what: str, parent_accuracy: float, accuracy: float, samples: int, max_drop: float | None, hint: str = ""
) -> float:
    """The accuracy change in points, for every stage that trades accuracy for speed (quantize, a
    target compiling INT8 or bf16); an AccuracyError when the drop exceeds ``max_drop``
    (--max-accuracy-drop, else the profile's quantize.max_accuracy_drop). ``hint``: what to try instead."""
    delta = (accuracy - parent_accuracy) * 100
    log.info(
        "%s: accuracy %.4f (parent %.4f, %+.2f points) on %d samples", what, accuracy, parent_accuracy, delta, samples
    )
    if max_drop is not None and -delta > max_drop + 1e-9:
        raise AccuracyError(
            f"{what} lost {-delta:.2f} accuracy points ({parent_accuracy:.4f} -> {accuracy:.4f} on {samples} "
            f"samples), above the allowed drop of {max_drop:g} (--max-accuracy-drop, or the profile's "
            f"quantize.max_accuracy_drop); nothing written" + (f": {hint}" if hint else "")
        )
    return delta


@contextmanager
def private_copy(artifact: Artifact, role: str, staging: Path) -> Iterator[Path]:
    """The source's ``role`` file, copied into a private directory inside ``staging`` and checked
    against the manifest's checksum; removed on exit. ONNX Runtime's quantizer writes beside the
    model it reads (``model-inferred.onnx``, pre-processed and augmented graphs): on a copy, it
    never writes into the source artifact, and runs of one source never meet each other."""
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=staging))
    try:
        entry = artifact.manifest["files"][role]
        copy = work / Path(entry["path"]).name
        shutil.copyfile(artifact.file(role), copy)
        if sha256_file(copy) != entry["sha256"]:
            raise ArtifactError(
                f"{artifact.path}: file '{entry['path']}' ({role}) changed after it was verified; rebuild the artifact"
            )
        yield copy
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quantize(
    source: str | Path | Artifact, out: str | Path, options: QuantizeOptions | None = None, force: bool = False
) -> Artifact:
    """Quantize an ONNX artifact; fail without writing if accuracy drops more than allowed."""
    from edgeptm.metrics import output_agreement
    from edgeptm.runtime import load
    from edgeptm.runtime.ort_backend import ORT_MODEL, OrtBackend, graph_role
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    options = options or QuantizeOptions()
    out = Path(out)
    profile = resolve_profile(options.profile)
    inputs = [options.val, options.calib, profile and profile.path]
    artifact = open_stage_source(
        source,
        out,
        force,
        "quantize",
        "an fp32 ONNX artifact (from 'edgeptm export')",
        lambda a: a.kind == "onnx" and a.manifest.get("precision") == "fp32",
        inputs=inputs,
    )
    if artifact.task == "text-generation":  # weight-only int4 / int8, gated on perplexity
        from edgeptm.quantization.generative import quantize_decoder

        return quantize_decoder(artifact, out, options, force, inputs)
    task = get_task(artifact.task)
    section = profile.quantize if profile else None
    mode = pick(options.mode, section and section.mode, DEFAULT_MODE.get(artifact.task, "dynamic-int8"))
    if mode not in MODES:
        raise UsageError(f"--mode {mode}: not one of {', '.join(MODES)}")
    max_drop = pick(options.max_accuracy_drop, section and section.max_accuracy_drop, None)
    settings: dict[str, Any] = {
        # Per-channel weight scales: ~3x smaller logit error than per-tensor on MiniLM at the same speed.
        "per_channel": pick(options.per_channel, section and section.per_channel, True),
        "reduce_range": pick(options.reduce_range, section and section.reduce_range, False),
    }
    calibration = None
    if mode == "static-int8":
        method = pick(options.calib_method, section and section.calibration_method, "minmax")
        if method not in CALIBRATION_METHODS:
            raise UsageError(f"--calib-method {method}: not one of {', '.join(CALIBRATION_METHODS)}")
        # uint8 activations: ONNX Runtime's x86 QLinearConv/MatMul kernels are built for u8 x s8.
        # int8: symmetric signed activations (zero point 0), the only Q/DQ form GPU compilers build.
        activations = pick(options.activations, section and getattr(section, "activations", None), "uint8")
        if activations not in ACTIVATION_TYPES:
            raise UsageError(f"--activations {activations}: not one of {', '.join(ACTIVATION_TYPES)}")
        settings.update(calibration_method=method, activation_type=activations)
        calibration = _calibration(artifact, options, section)
    elif mode == "fp16":
        settings = {"fp16_io": options.fp16_io}
    family = task.family(artifact)
    if options.op_types is not None or options.fallback not in (None, "none"):
        if mode not in ("static-int8", "dynamic-int8"):
            raise UsageError(f"--op-types and --fallback are for --mode static-int8 or dynamic-int8, not {mode}")
    if mode in ("static-int8", "dynamic-int8"):
        default = family.static_quant_ops if mode == "static-int8" else family.dynamic_quant_ops
        settings["op_types"] = _op_types(options.op_types, default)
    fallback = options.fallback not in (None, "none")
    if fallback and options.fallback != "auto":
        raise UsageError(f"--fallback {options.fallback}: not one of auto, none")
    if fallback and max_drop is None:
        raise UsageError("--fallback auto needs an accuracy budget: pass --max-accuracy-drop (points)")
    if options.activations and mode != "static-int8":
        raise UsageError(f"--activations is for --mode static-int8, not {mode}")
    if options.fp16_io and mode != "fp16":
        raise UsageError(f"--fp16-io is for --mode fp16, not {mode}")
    validation = _validation_data(artifact, task, options)
    if fallback and validation is None:
        raise UsageError(
            f"{artifact.path}: --fallback auto ranks nodes by what they cost in accuracy and needs labelled "
            "data: pass --val PATH"
        )
    run, precision = MODES[mode]

    with ArtifactWriter(out, force=force, inputs=[artifact.path, *inputs]) as writer:
        with private_copy(artifact, "model", writer.dir) as model:
            if fallback:
                record = _with_fallback(
                    artifact, model, writer, mode, family, settings, calibration, validation, profile, max_drop
                )
            else:
                record = run(model, writer.add("model", "model.onnx"), family, settings, calibration)
        record["source"] = {"role": "model", "sha256": artifact.manifest["files"]["model"]["sha256"]}
        derived = {}
        # The fallback's graph is the one ONNX Runtime runs: no fused graph is derived beside it.
        if mode in DERIVES_ORT_MODEL and artifact.has_file(ORT_MODEL) and not fallback:
            derived = _derive_ort_model(artifact, writer, run, family, settings, calibration)
        writer.carry(artifact, prefixes=("tokenizer/", "calib_data"))
        manifest = {
            "task": artifact.task,
            "labels": artifact.labels,
            "model": artifact.manifest["model"],
            "io": _io_with_precision(artifact.manifest["io"], mode, options.fp16_io),
            "preprocessing": artifact.preprocessing,
            "precision": precision,
            "parents": [artifact.as_parent()],
            "export": artifact.manifest.get("export"),
            "runtime": artifact.manifest.get("runtime"),
            "quantization": {"mode": mode, **record},
            **({"derived": derived} if derived else {}),
            "profile": profile.record() if profile else None,
        }
        staged = writer.preview("onnx", manifest)
        if validation is not None:
            data, data_how = validation
            data.to_jsonl(writer.add("val_data", "val.jsonl"))
            inputs, labels = data.inputs, data.labels
        else:
            source_inputs = calibration.inputs if calibration else preprocessor_for(artifact).sample_inputs(32)
            inputs, labels, data_how = source_inputs, None, "no labelled data: calibration or sample inputs"
        with load(artifact) as parent_predictor:
            parent_out = parent_predictor.logits(inputs)
        outputs = {}
        for role in ("model", *derived):  # the portable graph, and ONNX Runtime's beside it
            with predictor_for(staged, OrtBackend(staged, graph=role)) as predictor:
                outputs[role] = predictor.logits(inputs)
        agreement = output_agreement(parent_out, outputs["model"])
        manifest["fidelity"] = {**agreement, "against": "parent fp32 ONNX", "on": data_how}
        for role in derived:
            manifest["fidelity"][role] = {**output_agreement(parent_out, outputs[role]), "path": staged.file(role).name}
        if labels is None:
            if max_drop is not None:
                log.warning("max accuracy drop %g not applied: no labelled data (pass --val)", max_drop)
            manifest["metrics"] = {"accuracy": None, "note": "no labelled data; see 'fidelity' (pass --val)"}
            log.info(
                "%s: no labelled data; outputs vs parent: mean cosine %.5f, min %.5f",
                mode,
                manifest["fidelity"]["mean_cosine"],
                manifest["fidelity"]["min_cosine"],
            )
            return writer.finish("onnx", manifest)
        # Every graph answers to the guard; 'metrics' is the one ONNX Runtime serves (load()).
        parent = _score(parent_out, labels, artifact.labels)
        scores, deltas = {}, {}
        for role, logits in outputs.items():
            scores[role] = _score(logits, labels, artifact.labels)
            what = mode if role == "model" else f"{mode} ({staged.file(role).name})"
            deltas[role] = check_accuracy_drop(
                what, parent["accuracy"], scores[role]["accuracy"], scores[role]["samples"], max_drop, RETRY_HINTS[mode]
            )
        if derived:  # each graph's accuracy beside its fidelity record
            for role, record in (("model", manifest["fidelity"]), *((r, manifest["fidelity"][r]) for r in derived)):
                record.update(accuracy=scores[role]["accuracy"], accuracy_delta_points=round(deltas[role], 4))
        served = graph_role(staged)
        metrics = scores[served]
        manifest["metrics"] = {
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "val_samples": metrics["samples"],
            "parent_accuracy": parent["accuracy"],
            "accuracy_delta_points": round(deltas[served], 4),
            "max_accuracy_drop": max_drop,
            "validation": data_how,
            "measured_with": "onnxruntime-cpu",
            "graph": staged.file(served).name,
        }
        return writer.finish("onnx", manifest)


CACHE_BYTES = 384 * 2**20  # the fallback's encoded validation batches kept in memory between its scorings


def _op_types(given: str | None, default: tuple[str, ...] | None) -> list[str] | None:
    """--op-types: None keeps the family's recipe, "all" makes every type eligible (None to the
    quantizer), else a comma-separated list of ONNX op types."""
    if given is None:
        return list(default) if default is not None else None
    if given.strip().lower() == "all":
        return None
    ops = [op.strip() for op in given.split(",") if op.strip()]
    if not ops:
        raise UsageError(f"--op-types {given!r}: name op types (MatMul,Gemm,...) or 'all'")
    return ops


def _with_fallback(
    artifact: Artifact,
    model: Path,
    writer: ArtifactWriter,
    mode: str,
    family: Any,
    settings: dict[str, Any],
    calibration: Calibration | None,
    validation: tuple[Any, str],
    profile: Profile | None,
    max_drop: float,
) -> dict[str, Any]:
    """quantize --fallback auto: the search (quantization/fallback.py) over builds of ``model``."""
    from edgeptm.quantization.dynamic import DynamicBuild
    from edgeptm.quantization.fallback import DIFF_FEEDS, Search, accuracy_of, run_fallback
    from edgeptm.quantization.static import StaticBuild
    from edgeptm.runtime.preprocess import preprocessor_for

    builder = (StaticBuild if mode == "static-int8" else DynamicBuild)(model, family, settings, calibration)
    data, _ = validation
    preprocessor = preprocessor_for(artifact)
    index = {name: i for i, name in enumerate(artifact.labels)}
    labels = np.array([index[label] for label in data.labels])
    cached: list[tuple[dict[str, Any], Any]] = []  # the first batches, up to CACHE_BYTES: encoded once
    state = {"bytes": 0, "closed": False}

    def batches() -> Iterator[tuple[dict[str, Any], Any]]:
        yield from cached
        for start in range(len(cached) * 32, len(data.inputs), 32):
            batch = (preprocessor.encode(data.inputs[start : start + 32]), labels[start : start + 32])
            if not state["closed"] and state["bytes"] < CACHE_BYTES:
                state["bytes"] += sum(v.nbytes for v in batch[0].values())
                cached.append(batch)
            else:
                state["closed"] = True  # the batches after the cache are encoded on every pass
            yield batch

    threads = profile.runtime.threads if profile else None
    fixed = getattr(preprocessor, "max_length", None)
    search = Search(
        builder=builder,
        work=model.parent,
        val_batches=batches,
        diff_feeds=[preprocessor.encode([x]) for x in data.inputs[:DIFF_FEEDS]],
        timing_feed=preprocessor.encode([data.inputs[0]], fixed),
        parent_accuracy=accuracy_of(builder.float_path, batches(), threads),
        max_drop=max_drop,
        threads=threads,
    )
    return run_fallback(search, writer.add("model", "model.onnx"))


def _derive_ort_model(
    artifact: Artifact,
    writer: ArtifactWriter,
    run: Callable[..., dict[str, Any]],
    family: Any,
    settings: dict[str, Any],
    calibration: Calibration | None,
) -> dict[str, Any]:
    """The mode applied to the source's ONNX Runtime graph too: the result's ``ort-model`` and the
    manifest's ``derived`` section, saying what it was made from and how."""
    from edgeptm.exporter import STANDARD_DOMAINS, operator_domains
    from edgeptm.runtime.ort_backend import ORT_MODEL, ORT_MODEL_PATH

    source = (artifact.manifest.get("derived") or {}).get(ORT_MODEL) or {}
    with private_copy(artifact, ORT_MODEL, writer.dir) as fused:
        target = writer.dir / ORT_MODEL_PATH
        record = run(fused, target, family, settings, calibration)
    writer.add(ORT_MODEL, ORT_MODEL_PATH)
    entry = artifact.manifest["files"][ORT_MODEL]
    derived = {
        "from": "model",  # the registered file this one is ONNX Runtime's form of
        "for": source.get("for", "onnxruntime"),
        "providers": source.get("providers", []),
        "tool": f"{record['tool']}, on the parent's ONNX Runtime graph",
        "input": {"role": ORT_MODEL, "of": "parent", "path": entry["path"], "sha256": entry["sha256"]},
        "fused_by": source.get("tool"),
        "fused_operators": source.get("fused_operators", {}),
        "quantization": record,
        "operators": {d: ops for d, ops in operator_domains(target).items() if d not in STANDARD_DOMAINS},
    }
    return {ORT_MODEL: derived}


def _score(logits: Any, labels: list[str], names: list[str]) -> dict[str, Any]:
    from edgeptm.metrics import classification_metrics

    index = {name: i for i, name in enumerate(names)}
    return classification_metrics(logits, [index[label] for label in labels], len(names))


def _io_with_precision(io: dict[str, Any], mode: str, fp16_io: bool) -> dict[str, Any]:
    if mode != "fp16" or not fp16_io:
        return io

    def half(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "dtype": "float16"} if e["dtype"] == "float32" else e for e in entries]

    return {"inputs": half(io["inputs"]), "outputs": half(io["outputs"])}


__all__ = ["CALIBRATION_METHODS", "MODES", "QuantizeOptions", "check_accuracy_drop", "quantize"]
