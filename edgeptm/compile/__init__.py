"""Compile: turn an artifact into an engine for one runtime (TensorRT, AOTInductor).

Each target is a module with a ``build(artifact, out_dir, options) -> record`` function; the stage
around it is common: check the source fits the target, stage the engine in a temporary directory,
validate it against the parent on the parent's validation data, and write a manifest that records
where and how it was built, so ``load()`` can refuse an engine this machine cannot run.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm import trust
from edgeptm.artifacts import Artifact, ArtifactWriter, check_output_paths, open_stage_source
from edgeptm.errors import UsageError
from edgeptm.profiles import Profile, pick, resolve_profile
from edgeptm.runtime.base import native_code

log = logging.getLogger(__name__)

# target -> (module:function, the artifact kinds it compiles from, what they are in words)
TARGETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "aoti": ("edgeptm.compile.aoti:build", ("checkpoint",), "a checkpoint artifact (PyTorch weights)"),
    "tensorrt": ("edgeptm.compile.tensorrt:build", ("onnx",), "an ONNX artifact (FP32, FP16 or INT8 Q/DQ)"),
    "openvino": ("edgeptm.compile.openvino:build", ("onnx",), "an ONNX artifact"),
    "executorch": ("edgeptm.compile.executorch:build", ("checkpoint",), "a checkpoint artifact (PyTorch weights)"),
}

# Options that mean something to some targets only: given for another, they are an error, not ignored.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "precision": ("openvino", "executorch"),
    "calib": ("openvino", "executorch"),
    "calib_samples": ("openvino", "executorch"),
    "max_accuracy_drop": ("openvino", "executorch"),
}

_ONLY_FOR_WHY = {
    ("tensorrt", "precision"): ": TensorRT builds the precision of the graph (quantize or export it first)",
    ("tensorrt", "calib"): ": TensorRT builds the Q/DQ graph that 'quantize --mode static-int8 --calib PATH' writes",
}


@dataclass
class CompileOptions:
    """Unset options come from the device profile's ``compile`` section, then edgeptm's defaults."""

    target: str | None = None  # tensorrt | aoti | openvino | executorch (default: the profile's, else aoti)
    device: str | None = None  # aoti: cpu | cuda
    precision: str | None = None  # openvino: fp32 | bf16 | int8; executorch: fp32 | int8 (default: fp32)
    calib: str | None = None  # openvino/executorch int8: calibration data (default: the artifact's training sample)
    calib_samples: int | None = None  # openvino/executorch int8: calibration inputs (default 300 / 100)
    max_accuracy_drop: float | None = None  # openvino/executorch int8, bf16: points (default: the profile's)
    max_batch: int | None = None  # largest batch the engine accepts (default 32)
    max_seq_len: int | None = None  # text: longest sequence (default: the model's max length)
    shapes: list[str] | None = None  # explicit NAME:MIN,OPT,MAX per input (trtexec's 1x128 notation)
    workspace_mb: int | None = None  # tensorrt: builder scratch memory
    optimization_level: int | None = None  # tensorrt: builder optimization level 0..5
    dla_core: int | None = None  # tensorrt: DLA core (Jetson AGX/NX)
    gpu_fallback: bool | None = None  # tensorrt: with a DLA core, layers it lacks run on the GPU
    hardware_compatibility: str | None = None  # tensorrt: none | ampere_plus | same_compute_capability
    version_compatible: bool | None = None  # tensorrt: runs on later TensorRT of the same major
    cuda_graph: bool | None = None  # tensorrt: the backend replays a captured CUDA graph
    timing_cache: str | None = None  # tensorrt: timing cache file (default: one per GPU arch + version)
    validation_samples: int = 64
    profile: str | Profile | None = None

    def shape_sources(self) -> dict[str, Any]:
        """Arguments for ``shapes.shape_ranges``: --shapes, else --max-batch/--max-seq-len, else the profile."""
        from edgeptm.compile.shapes import DEFAULT_OPT_SEQ, parse_shapes

        section = self.profile.compile if isinstance(self.profile, Profile) else None
        batch = section.batch if section else None
        seq_len = section.seq_len if section else None
        if self.max_batch is not None:
            batch = (1, min(batch[1] if batch else 1, self.max_batch), self.max_batch)
        if self.max_seq_len is not None:
            opt = seq_len[1] if seq_len else DEFAULT_OPT_SEQ
            seq_len = (1, min(opt, self.max_seq_len), self.max_seq_len)
        return {
            "explicit": parse_shapes(self.shapes or []),
            "batch": batch,
            "seq_len": seq_len,
            "fit_seq_len": self.max_seq_len is None,  # a profile's range is cut to the model's length
        }


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


def compile(  # noqa: A001 - the stage is called compile, as in the CLI
    source: str | Path | Artifact, out: str | Path, options: CompileOptions | None = None, force: bool = False
) -> Artifact:
    """Compile an artifact for ``options.target``; the engine is validated before it is published."""
    options = options or CompileOptions()
    profile = resolve_profile(options.profile)
    section = profile.compile if profile else None
    name = pick(options.target, section and section.target, "aoti")
    device = pick(options.device, section and section.device if name == "aoti" else None, "cpu")
    options = dataclasses.replace(options, target=name, device=device, profile=profile)
    if name not in TARGETS:
        raise UsageError(f"--target {name}: not one of {', '.join(TARGETS)}")
    target, kinds, accepts = TARGETS[name]
    for key, targets in ONLY_FOR.items():
        if getattr(options, key) is not None and name not in targets:
            raise UsageError(
                f"--{key.replace('_', '-')} is for --target {' or '.join(targets)}, not {name}"
                + (_ONLY_FOR_WHY.get((name, key), ""))
            )
    for key in ("max_batch", "max_seq_len"):  # --calib-samples: tasks.draw_calibration checks it
        value = getattr(options, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if options.max_accuracy_drop is not None and options.max_accuracy_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0, got {options.max_accuracy_drop}")
    out = Path(out)
    # What the stage reads, which --out (replaced with --force) may not touch.
    inputs = [options.calib, options.timing_cache, profile and profile.path]
    artifact = open_stage_source(
        source, out, force, f"compile --target {name}", accepts, lambda a: a.kind in kinds, inputs=inputs
    )
    if options.timing_cache:  # TensorRT writes it back: never over the source or into an artifact
        check_output_paths([options.timing_cache], "--timing-cache", [artifact.path])
    module_name, function = target.split(":")
    build = getattr(importlib.import_module(module_name), function)
    with ArtifactWriter(out, force=force, inputs=[artifact.path, *inputs]) as writer:
        manifest = build(artifact, writer, options)
        manifest["profile"] = profile.record() if profile else None
        engine = writer.finish("engine", manifest)
    native = native_code(engine)
    if native:  # built by this user here: its native code may load without 'edgeptm trust'
        try:
            trust.record(engine, "built here", native)
        except OSError as exc:  # a read-only home: the engine is fine, trusting it is left to the user
            log.warning("could not record %s as trusted (%s); run: edgeptm trust %s", out, exc.strerror, out)
    return engine


__all__ = ["CompileOptions", "ONLY_FOR", "TARGETS", "compile", "engine_manifest", "validate_against_onnxruntime"]
