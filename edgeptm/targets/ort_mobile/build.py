"""ONNX Runtime Mobile: an ONNX artifact -> the ORT format, the way onnxruntime's own converter
(``onnxruntime.tools.convert_onnx_models_to_ort``, the tool ONNX Runtime documents for mobile) does it.

An ONNX Runtime session at ``ORT_ENABLE_ALL`` saves the graph it runs as a ``.ort`` FlatBuffer
("fixed" optimization style: the optimizations are baked in, for ``--platform arm``, which allows
INT8 Q/DQ fusions that ARM kernels run and leaves out x86's NCHWc layout, or ``amd64``), with the
optimizers the artifact keeps off for its model family (which the converter's command line cannot
take); then onnxruntime's ``create_config_from_models`` writes the operator (and, with type
reduction, type) configuration a reduced ONNX Runtime build is compiled from, so the app ships only
the kernels this model needs: ``build.sh --minimal_build --include_ops_by_config FILE
--enable_reduced_operator_type_support``. The full onnxruntime wheel loads ``.ort`` files, so the
engine is checked here against ONNX Runtime running the parent ONNX, on the parent's validation
inputs, and scored on its labelled split. Nothing is written beside the source.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, RuntimeUnavailable

log = logging.getLogger(__name__)

# Gates against ONNX Runtime running the parent ONNX, by the parent's precision. A float graph
# after ONNX Runtime's own rewrites computes the same sums in another order: cosine and top-1 both
# hold tightly. A quantized graph converted for arm takes other INT8 kernels and fusions
# (session.qdqisint8allowed) than x86 runs for the ONNX: a classifier's logits near its decision
# boundary swing direction with any rounding (measured on the demo's MiniLM dynamic INT8: min
# cosine -1.0 over 64 sentences at 98.4% top-1 agreement), so there the gate is top-1 agreement, and
# the accuracy on the labelled split, recorded beside the parent's, is the real check. A broken
# conversion (inputs bound wrongly, nodes lost) agrees on ~1/classes.
GATES = {"float": (0.999, 0.98), "quantized": (-1.0, 0.95)}
CONFIG_NAME = "required_operators_and_types.config"


def import_converter() -> Any:
    """onnxruntime's ORT-format tools, or RuntimeUnavailable naming what to install."""
    try:
        from onnxruntime.tools.ort_format_model import create_config_from_models
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"ONNX Runtime's ORT format tools are not available here ({exc}): pip install onnxruntime"
        ) from None
    return create_config_from_models


def convert(source: Path, target: Path, platform: str, disabled: list[str]) -> None:
    """What ``convert_onnx_models_to_ort`` does for the "fixed" style (an ONNX Runtime session at
    ORT_ENABLE_ALL saving the graph it runs in the ORT format, int8 Q/DQ fusions allowed for arm,
    x86's NCHWc layout kept out of arm files), plus the rewrites the artifact says to keep off for
    this model family (its manifest's runtime.onnxruntime.disabled_optimizers), which the
    converter's command line cannot pass: the .ort then runs the graph ONNX Runtime runs for the ONNX."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(target)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.add_session_config_entry("session.qdqisint8allowed", "1" if platform == "arm" else "0")
    options.log_severity_level = 3  # the amd64 file's "hardware specific optimizations" notice is the point of it
    filters = list(disabled) + (["NchwcTransformer"] if platform != "amd64" else [])
    ort.InferenceSession(
        str(source), sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=filters or None
    )


def operator_config(path: Path) -> dict[str, Any]:
    """What a reduced build must hold: per ``domain;opset``, the operator kinds (the config's lines
    are ``domain;opset;Op1,Op2{types},...``)."""
    by_domain: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, ops = line.split(";", 2)
        names = []
        depth, current = 0, ""
        for char in ops:  # operator names, without their {type lists} (which hold commas too)
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            elif char == "," and depth == 0:
                names.append(current.strip())
                current = ""
            elif depth == 0:
                current += char
        if current.strip():
            names.append(current.strip())
        by_domain[f"{domain or 'ai.onnx'};{opset}"] = sorted(names)
    return {"operators": sum(len(v) for v in by_domain.values()), "by_domain": by_domain}


def _onnxruntime_graph(artifact: Artifact) -> tuple[str, list[str]]:
    """The graph ONNX Runtime runs for this artifact (the model, or the file derived for ONNX
    Runtime beside it), and the optimizers its manifest keeps off."""
    from edgeptm.runtime.ort_backend import graph_role

    role = graph_role(artifact, "CPUExecutionProvider")  # the file ONNX Runtime's CPU provider runs
    hints = artifact.view.runtime.get("onnxruntime") or {}
    return role, list(hints.get("disabled_optimizers") or [])


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import onnxruntime

    from edgeptm.compile.shapes import shape_ranges
    from edgeptm.targets.engine import engine_manifest, validate_against_onnxruntime
    from edgeptm.targets.ort_mobile.backend import OrtMobileBackend

    settings = options.settings
    if options.shapes or options.max_batch is not None or options.max_seq_len is not None:
        # The ORT format keeps the graph's dynamic axes; checked anyway, so a bad request is refused.
        shape_ranges(artifact.manifest["io"]["inputs"], artifact.preprocessing, **options.shape_sources())
        log.info(
            "the ORT format keeps the ONNX graph's dynamic axes: --shapes/--max-batch/--max-seq-len change nothing"
        )
    create_config = import_converter()
    role, disabled = _onnxruntime_graph(artifact)
    model = writer.add("model", "model.ort")
    config = writer.add("operator_config", CONFIG_NAME)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=writer.dir, prefix=".convert-") as work:
        try:
            convert(artifact.file(role), model, settings.platform, disabled)
            listed = Path(work) / CONFIG_NAME
            with contextlib.redirect_stdout(io.StringIO()):
                create_config([model], listed, settings.type_reduction)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ExportError(
                f"{artifact.path}: ONNX Runtime cannot convert this model to the ORT format: {detail}"
            ) from None
        # The tool's header names the staging path it read: the artifact says what it ships.
        lines = listed.read_text().splitlines()
        header = ["# Generated by onnxruntime.tools.ort_format_model.create_config_from_models from model.ort"]
        config.write_text("\n".join(header + [line for line in lines if not line.startswith("#")]) + "\n")
    seconds = time.perf_counter() - started
    writer.carry(artifact)
    ops = operator_config(config)
    record = {
        "target": "ort-mobile",
        "tool": "ONNX Runtime session saving the ORT format (as convert_onnx_models_to_ort, fixed style) + "
        "ort_format_model.create_config_from_models",
        "converted": {"role": role, "disabled_optimizers": disabled},
        "onnxruntime": onnxruntime.__version__,
        "platform": settings.platform,
        "graph_optimization": "ORT_ENABLE_ALL, saved in the .ort (fixed style)",
        "type_reduction": settings.type_reduction,
        "operator_config": {"path": CONFIG_NAME, **ops},
        "reduced_build": (
            f"./build.sh --minimal_build --include_ops_by_config {CONFIG_NAME}"
            + (" --enable_reduced_operator_type_support" if settings.type_reduction else "")
            + " (with --android or --ios and their options)"
        ),
        "size_bytes": {"onnx": artifact.file("model").stat().st_size, "ort": model.stat().st_size},
        "compile_seconds": round(seconds, 1),
    }
    manifest = engine_manifest(artifact, record)
    staged = writer.preview("engine", manifest)
    precision = artifact.view.precision
    min_cosine, min_top1 = GATES["float" if precision in ("fp32", "fp16") else "quantized"]
    manifest["validation"], manifest["metrics"] = validate_against_onnxruntime(
        artifact, staged, OrtMobileBackend(staged), options.validation_samples, min_cosine, min_top1
    )
    log.info(
        "converted %s to the ORT format for %s in %.1f s (%d operator kinds)",
        writer.out,
        settings.platform,
        seconds,
        ops["operators"],
    )
    return manifest
