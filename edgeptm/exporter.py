"""torch -> ONNX, then optimise for ONNX Runtime, then always validate against PyTorch.

The legacy TorchScript exporter (``dynamo=False``) is used on purpose: with eager attention, ONNX
Runtime's transformer optimizer recognises its attention subgraph and fuses it (Attention,
BiasGelu, ...), which the dynamo exporter's graphs do not get; CNNs export to plain NCHW
Conv graphs that every runtime reads. Every exported graph is checked with the ONNX checker,
compared with PyTorch on real validation samples (max |logit difference| and label agreement go
into the manifest), and scored on the whole validation split, so the artifact carries its own
accuracy.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeptm.artifacts import Artifact, ArtifactWriter, open_stage_source
from edgeptm.errors import ExportError, UsageError
from edgeptm.profiles import Profile, pick, resolve_profile
from edgeptm.tasks import carried_val_data, get_task

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
VALIDATION_SAMPLES = 64


@dataclass
class ExportOptions:
    opset: int | None = None
    optimize: bool | None = None
    atol: float | None = None  # default: the model's own tolerance, recorded at fine-tuning
    max_length: int | None = None  # text: longest sequence served; default the checkpoint's (as fine-tuned)
    profile: str | Profile | None = None
    validation_samples: int = VALIDATION_SAMPLES


def serving_preprocessing(artifact: Artifact, max_length: int | None) -> dict[str, Any]:
    """The checkpoint's preprocessing, serving texts up to ``max_length`` tokens when asked: a
    model fine-tuned on short texts can serve longer ones, up to its encoder's position limit."""
    from edgeptm.models.text import artifact_position_limit

    preprocessing = dict(artifact.preprocessing)
    if max_length is None:
        return preprocessing
    if "max_length" not in preprocessing:
        raise UsageError(f"{artifact.path}: --max-length is for text models; this one takes images")
    if max_length < 1:
        raise UsageError(f"--max-length must be >= 1, got {max_length}")
    limit = artifact_position_limit(artifact)
    if limit is not None and max_length > limit:
        raise UsageError(f"{artifact.path}: --max-length {max_length} exceeds what its encoder takes ({limit} tokens)")
    preprocessing["max_length"] = max_length
    return preprocessing


def _full_length_check(model: Any, predictor: Any, texts: list[str], atol: float, what: str) -> dict[str, Any]:
    """Validation texts are short: compare one text that fills the served length too, so every
    position the artifact serves (beyond the fine-tuned length with --max-length) is checked."""
    words = " ".join(map(str, texts)).split() or ["film"]
    longest = predictor.preprocessor.max_length
    filling = " ".join((words * (longest // len(words) + 1))[:longest])  # >= 1 token a word: cut at the limit
    check = compare_with_torch(model, predictor, [filling], batch_size=1)
    tokens = int(predictor.encode([filling])[predictor.backend.input_names[0]].shape[1])
    if check["max_abs_diff"] > atol:
        raise ExportError(
            f"{what}: max abs difference {check['max_abs_diff']:.3g} vs PyTorch on a {tokens}-token text exceeds "
            f"the tolerance {atol:g}"
        )
    return {"tokens": tokens, "max_abs_diff": check["max_abs_diff"]}


def _torch_export(
    model: Any,
    example: list[Any],
    names: list[str],
    output: str,
    axes: dict[str, dict[int, str]],
    path: Path,
    opset: int,
) -> None:
    import torch

    axes = {**axes, output: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about python control flow in HF code
        torch.onnx.export(
            model,
            tuple(example),
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _ort_optimize(path: Path, out: Path, model_info: dict[str, Any], family: Any) -> dict[str, Any]:
    """ONNX Runtime's transformer fusions; returns what was fused (nothing when the family has none)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if family.ort_model_type is None:
        return {
            "applied": False,
            "reason": "no offline fusion recipe for this model family; ONNX Runtime applies its own graph "
            "optimizations (Conv+BatchNorm+activation fusion, ...) when a session loads the model",
        }
    options = FusionOptions(family.ort_model_type)
    for name, value in family.ort_fusion_overrides.items():
        setattr(options, name, value)
    optimized = optimize_model(
        str(path),
        model_type=family.ort_model_type,
        num_heads=model_info["num_attention_heads"],
        hidden_size=model_info["hidden_size"],
        optimization_options=options,
        opt_level=0,
    )
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(out), use_external_data_format=False)
    return {
        "applied": True,
        "tool": "onnxruntime.transformers.optimizer",
        "model_type": family.ort_model_type,
        "fusion_overrides": family.ort_fusion_overrides,
        "fused_operators": fused,
    }


def validate_against_torch(
    model: Any,
    predictor: Any,
    samples: list[Any],
    val: Any,
    atol: float,
    what: str,
    parent: Artifact,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The check every converted model passes before it is published: its outputs against eager
    PyTorch on real samples (ExportError beyond ``atol``), then its accuracy on the labelled split.
    Returns the manifest's ``validation`` and ``metrics`` sections, and the raw metrics (or None)."""
    from edgeptm.metrics import evaluate_predictor

    check = compare_with_torch(model, predictor, samples, batch_size=min(16, predictor.batch_size), device=device)
    if check["max_abs_diff"] > atol:
        raise ExportError(
            f"{parent.path}: {what}: max abs difference {check['max_abs_diff']:.3g} vs PyTorch exceeds the "
            f"tolerance {atol:g} (on {check['samples']} validation samples)"
        )
    metrics = evaluate_predictor(predictor, val.inputs, val.labels) if val is not None else None
    section = {"measured_with": predictor.backend.name, "parent_accuracy": parent.metrics.get("accuracy")}
    if metrics is not None:
        section.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], val_samples=metrics["samples"])
    validation = {**check, "atol": atol, "against": f"torch-eager fp32 on {device} (parent checkpoint)"}
    return validation, section, metrics


def compare_with_torch(
    model: Any, predictor: Any, inputs: list[Any], batch_size: int = 16, device: str = "cpu"
) -> dict[str, float]:
    """Max |output difference|, cosine similarity and top-1 agreement of a predictor's backend
    against PyTorch, on the same feeds."""
    import torch

    from edgeptm.metrics import output_agreement

    expected, got = [], []
    for start in range(0, len(inputs), batch_size):
        feed = predictor.encode(inputs[start : start + batch_size])
        with torch.inference_mode():
            args = [torch.from_numpy(feed[n]).to(device) for n in predictor.backend.input_names]
            expected.append(model(*args).cpu().numpy())
        got.append(next(iter(predictor.backend.run(feed).values())))
    agreement = output_agreement(np.concatenate(expected), np.concatenate(got))
    return {**agreement, "label_agreement": agreement["top1_agreement"]}


def export(
    source: str | Path | Artifact, out: str | Path, options: ExportOptions | None = None, force: bool = False
) -> Artifact:
    """Export a checkpoint artifact to an ONNX artifact, validated against PyTorch."""
    import onnx
    import torch

    from edgeptm.runtime.ort_backend import OrtBackend
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    options = options or ExportOptions()
    out = Path(out)
    profile = resolve_profile(options.profile)
    inputs = [profile and profile.path]  # a profile file given by path is an input too
    artifact = open_stage_source(
        source, out, force, "export", "a checkpoint artifact", lambda a: a.kind == "checkpoint", inputs=inputs
    )
    opset = pick(options.opset, profile and profile.export.opset, DEFAULT_OPSET)
    optimize = pick(options.optimize, profile and profile.export.optimize, True)
    model_info = artifact.manifest["model"]
    atol = pick(options.atol, model_info.get("export_atol"), 1e-3)
    preprocessing = serving_preprocessing(artifact, options.max_length)
    lengths = {}  # text: what the artifact serves, and what it was fine-tuned at
    if "max_length" in preprocessing:
        served, tuned = preprocessing["max_length"], artifact.preprocessing["max_length"]
        lengths["max_length"] = {"served": served, "checkpoint": tuned}
    task = get_task(artifact.task)
    family = task.family(artifact)

    model = task.torch_model(artifact, for_export=True)
    names = [i["name"] for i in artifact.manifest["io"]["inputs"]]
    val = carried_val_data(task, artifact)
    preprocessor = preprocessor_for(artifact)
    samples = val.inputs if val is not None else preprocessor.sample_inputs(options.validation_samples)
    # Batch 2 (of different lengths, for text): a batch-1 example invites shape specialisation.
    # Encoded by the same serving preprocessor the validation below goes through.
    example_feed = preprocessor.encode(samples[:2] if len(samples) >= 2 else samples * 2)
    example = [torch.from_numpy(example_feed[n]) for n in names]

    with ArtifactWriter(out, force=force, inputs=[artifact.path, *inputs]) as writer:
        started = time.perf_counter()
        raw = writer.dir / "raw.onnx"
        try:
            output = artifact.manifest["io"]["outputs"][0]["name"]
            _torch_export(model, example, names, output, task.dynamic_axes(artifact), raw, opset)
            onnx.checker.check_model(str(raw))
        except Exception as exc:  # exporter errors come from deep inside torch
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = task.export_hint(first, artifact)
            raise ExportError(
                f"{artifact.path}: ONNX export failed at opset {opset}: {first[:300]}{'; ' + hint if hint else ''}"
            ) from None
        model_path = writer.add("model", "model.onnx")
        optimization: dict[str, Any] = {"applied": False, "reason": "disabled (--no-optimize or profile)"}
        if optimize:
            optimization = _ort_optimize(raw, model_path, model_info, family)
        if not model_path.exists():
            raw.rename(model_path)
        else:
            raw.unlink()
        onnx.checker.check_model(str(model_path))
        export_seconds = time.perf_counter() - started

        writer.carry(artifact)
        graph = onnx.load(str(model_path), load_external_data=False)
        manifest = {
            "task": artifact.task,
            "labels": artifact.labels,
            "model": model_info,
            "io": artifact.manifest["io"],
            "preprocessing": preprocessing,
            "precision": "fp32",
            "parents": [artifact.as_parent()],
            "export": {
                "exporter": f"torch.onnx (TorchScript, dynamo=False) torch {torch.__version__}",
                "opset": opset,
                "dynamic_axes": {n: list(axes.values()) for n, axes in task.dynamic_axes(artifact).items()},
                **lengths,
                "optimization": optimization,
                "graph_nodes": len(graph.graph.node),
                "export_seconds": round(export_seconds, 1),
            },
            # How runtimes should open the graph; every later stage passes this on.
            "runtime": {"onnxruntime": {"disabled_optimizers": list(family.ort_disabled_optimizers)}},
            "profile": profile.record() if profile else None,
        }
        staged = writer.preview("onnx", manifest)
        with predictor_for(staged, OrtBackend(staged)) as predictor:
            what = f"output '{output}' (opset {opset})"
            manifest["validation"], manifest["metrics"], metrics = validate_against_torch(
                model, predictor, samples[: options.validation_samples], val, atol, what, artifact
            )
            if "max_length" in preprocessing:
                manifest["validation"]["full_length"] = _full_length_check(
                    model, predictor, samples, atol, f"{artifact.path}: {what}"
                )
        check = manifest["validation"]
        log.info(
            "exported %s: max |diff| %.2g, agreement %.3f, accuracy %s",
            out,
            check["max_abs_diff"],
            check["label_agreement"],
            f"{metrics['accuracy']:.4f}" if metrics else "n/a (no labelled data)",
        )
        return writer.finish("onnx", manifest)
