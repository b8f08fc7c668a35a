"""torch -> portable ONNX, ONNX Runtime's fused graph derived beside it, both validated against PyTorch.

The artifact's ``model`` file is the exporter's graph as it comes: standard ONNX operators only
(the default ai.onnx domain), which every runtime that compiles from ONNX reads (every compile
target, and ONNX Runtime itself). With ``optimize`` (the default), ONNX Runtime's transformer
optimizer rewrites a copy into its fused contrib operators (com.microsoft Attention, BiasGelu,
EmbedLayerNormalization, ...) for text models: that graph is a second registered, checksummed
file (``ort-model`` -> ``model.onnxruntime.onnx``), recorded under the manifest's ``derived``
section (from which file, by which tool, what it fused, for which providers), and only ONNX
Runtime's backend opens it. It is derived here, once, rather than when a session opens: on
MiniLM the optimizer costs ~2 s (its import ~0.9 s, the rewrite ~1.1 s) against ~0.15 s for the
session itself, and a cache of it would be a file outside the artifact's checksums.

The legacy TorchScript exporter (``dynamo=False``) is used on purpose: with eager attention, ONNX
Runtime's transformer optimizer recognises its attention subgraph and fuses it, which the dynamo
exporter's graphs do not get; CNNs export to plain NCHW Conv graphs that every runtime reads.
Every graph written is checked with the ONNX checker and compared with PyTorch on real
validation samples (max |logit difference| and label agreement go into the manifest's
``validation``, the derived graph's beside the portable one's); the graph ONNX Runtime serves is
scored on the whole validation split, so the artifact carries its own accuracy.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeptm.artifacts import Artifact, ArtifactWriter, sha256_file
from edgeptm.sources import open_stage_source
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
    val: str | None = None  # generators: examples to measure perplexity on when the checkpoint carries none


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


STANDARD_DOMAINS = ("", "ai.onnx")


def operator_domains(model: Path | Any) -> dict[str, list[str]]:
    """The operator types of an ONNX model (a path or a loaded ModelProto) by domain (``ai.onnx``
    for the standard one), subgraphs included: what a runtime's ONNX reader must know to take it."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False) if isinstance(model, (str, Path)) else model
    found: dict[str, set[str]] = {}
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            found.setdefault(node.domain or "ai.onnx", set()).add(node.op_type)
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else list(attribute.graphs))
    return {domain: sorted(ops) for domain, ops in sorted(found.items())}


def _ort_optimize(path: Path, out: Path, model_info: dict[str, Any], family: Any) -> dict[str, Any]:
    """ONNX Runtime's transformer fusions of ``path`` written to ``out``; returns what was fused
    (nothing, and no file, when the family has no recipe)."""
    import onnxruntime
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
    if not fused:
        return {"applied": False, "reason": f"ONNX Runtime's {family.ort_model_type} fusions matched nothing"}
    optimized.save_model_to_file(str(out), use_external_data_format=False)
    return {
        "applied": True,
        "tool": "onnxruntime.transformers.optimizer",
        "onnxruntime": onnxruntime.__version__,
        "model_type": family.ort_model_type,
        "fusion_overrides": family.ort_fusion_overrides,
        "fused_operators": fused,
    }


def _derive_ort_graph(
    writer: ArtifactWriter, model_path: Path, model_info: dict[str, Any], family: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ONNX Runtime's fused graph of ``model_path``, registered as ``ort-model`` beside it: returns
    the export's ``optimization`` record and the manifest's ``derived`` section (empty: no file)."""
    import onnx

    from edgeptm.runtime.ort_backend import ORT_MODEL, ORT_MODEL_PATH, ORT_MODEL_PROVIDERS

    started = time.perf_counter()
    ort_path = writer.dir / ORT_MODEL_PATH
    optimization = _ort_optimize(model_path, ort_path, model_info, family)
    if not optimization["applied"]:
        return optimization, {}
    writer.add(ORT_MODEL, ORT_MODEL_PATH)
    onnx.checker.check_model(str(ort_path))
    fused = onnx.load(str(ort_path), load_external_data=False)
    optimization.update(role=ORT_MODEL, path=ORT_MODEL_PATH, seconds=round(time.perf_counter() - started, 1))
    record = {
        "from": "model",  # the registered file this one is ONNX Runtime's form of
        "for": "onnxruntime",
        "providers": list(ORT_MODEL_PROVIDERS),
        "tool": f"onnxruntime.transformers.optimizer (onnxruntime {optimization['onnxruntime']}, opt_level 0)",
        "input": {"path": model_path.name, "sha256": sha256_file(model_path)},
        "model_type": optimization["model_type"],
        "fusion_overrides": optimization["fusion_overrides"],
        "fused_operators": optimization["fused_operators"],
        "operators": {d: ops for d, ops in operator_domains(fused).items() if d not in STANDARD_DOMAINS},
        "graph_nodes": len(fused.graph.node),
    }
    return optimization, {ORT_MODEL: record}


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

    validation = check_against_torch(model, predictor, samples, atol, what, parent, device)
    metrics = evaluate_predictor(predictor, val.inputs, val.labels) if val is not None else None
    section = {"measured_with": predictor.backend.name, "parent_accuracy": parent.metrics.get("accuracy")}
    if metrics is not None:
        section.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], val_samples=metrics["samples"])
    return validation, section, metrics


def check_against_torch(
    model: Any, predictor: Any, samples: list[Any], atol: float, what: str, parent: Artifact, device: str = "cpu"
) -> dict[str, Any]:
    """A predictor's outputs against eager PyTorch on real samples: the manifest's ``validation``
    record, or an ExportError beyond ``atol``."""
    check = compare_with_torch(model, predictor, samples, batch_size=min(16, predictor.batch_size), device=device)
    if check["max_abs_diff"] > atol:
        raise ExportError(
            f"{parent.path}: {what}: max abs difference {check['max_abs_diff']:.3g} vs PyTorch exceeds the "
            f"tolerance {atol:g} (on {check['samples']} validation samples)"
        )
    return {**check, "atol": atol, "against": f"torch-eager fp32 on {device} (parent checkpoint)"}


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

    from edgeptm.runtime.ort_backend import ORT_MODEL_PATH, OrtBackend, graph_role
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    options = options or ExportOptions()
    out = Path(out)
    profile = resolve_profile(options.profile)
    inputs = [profile and profile.path, options.val]  # a profile file given by path is an input too
    artifact = open_stage_source(
        source, out, force, "export", "a checkpoint artifact", lambda a: a.kind == "checkpoint", inputs=inputs
    )
    if artifact.task == "text-generation":  # a decoder with its KV cache (edgeptm.decoder)
        from edgeptm.decoder import export_decoder

        return export_decoder(artifact, out, options, force, inputs)
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
        model_path = writer.add("model", "model.onnx")
        try:
            output = artifact.manifest["io"]["outputs"][0]["name"]
            _torch_export(model, example, names, output, task.dynamic_axes(artifact), model_path, opset)
            onnx.checker.check_model(str(model_path))
        except Exception as exc:  # exporter errors come from deep inside torch
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = task.export_hint(first, artifact)
            raise ExportError(
                f"{artifact.path}: ONNX export failed at opset {opset}: {first[:300]}{'; ' + hint if hint else ''}"
            ) from None
        graph = onnx.load(str(model_path), load_external_data=False)
        domains = operator_domains(graph)
        foreign = [f"{d}:{op}" for d, ops in domains.items() if d not in STANDARD_DOMAINS for op in ops]
        if foreign:  # the exporter's own choice (a custom symbolic): nothing here can make it standard
            log.warning("%s: the exported graph holds non-standard operators: %s", out, ", ".join(foreign))

        optimization: dict[str, Any] = {"applied": False, "reason": "disabled (--no-optimize or profile)"}
        derived: dict[str, Any] = {}
        if optimize:
            optimization, derived = _derive_ort_graph(writer, model_path, model_info, family)
        export_seconds = time.perf_counter() - started
        writer.carry(artifact)
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
                # What 'model' holds: standard ONNX ('ai.onnx') only, unless the exporter said otherwise.
                "operator_domains": list(domains),
                "optimization": optimization,
                "graph_nodes": len(graph.graph.node),
                "export_seconds": round(export_seconds, 1),
            },
            # ONNX Runtime's own graph beside the portable one ('ort-model'), and how it was made.
            **({"derived": derived} if derived else {}),
            # How runtimes should open the graph; every later stage passes this on.
            "runtime": {"onnxruntime": {"disabled_optimizers": list(family.ort_disabled_optimizers)}},
            "profile": profile.record() if profile else None,
        }
        staged = writer.preview("onnx", manifest)
        what = f"output '{output}' (opset {opset})"
        # Every graph is checked against PyTorch (the portable one's record at the top, the derived
        # one's beside it); the one ONNX Runtime serves is also scored on the validation split.
        served, checks = graph_role(staged), {}
        for role in ("model", *derived):
            label = what if role == "model" else f"{what}, {ORT_MODEL_PATH} (ONNX Runtime's fused graph)"
            with predictor_for(staged, OrtBackend(staged, graph=role)) as predictor:
                if role == served:
                    checks[role], manifest["metrics"], metrics = validate_against_torch(
                        model, predictor, samples[: options.validation_samples], val, atol, label, artifact
                    )
                    manifest["metrics"]["graph"] = staged.file(role).name
                else:
                    checks[role] = check_against_torch(
                        model, predictor, samples[: options.validation_samples], atol, label, artifact
                    )
                if "max_length" in preprocessing:
                    checks[role]["full_length"] = _full_length_check(
                        model, predictor, samples, atol, f"{artifact.path}: {label}"
                    )
        manifest["validation"] = checks["model"]
        for role in derived:
            manifest["validation"][role] = {**checks[role], "path": staged.file(role).name}
        check = manifest["validation"]
        log.info(
            "exported %s: max |diff| %.2g, agreement %.3f, accuracy %s",
            out,
            check["max_abs_diff"],
            check["label_agreement"],
            f"{metrics['accuracy']:.4f}" if metrics else "n/a (no labelled data)",
        )
        return writer.finish("onnx", manifest)
