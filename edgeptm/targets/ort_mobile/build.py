"""ONNX Runtime Mobile: an ONNX artifact -> the ORT format, with onnxruntime's own converter
(``onnxruntime.tools.convert_onnx_models_to_ort``, the tool ONNX Runtime documents for mobile).

The converter loads the graph in an ONNX Runtime session at ``ORT_ENABLE_ALL`` and saves what the
session runs as a ``.ort`` FlatBuffer ("fixed" optimization style: the optimizations are baked in,
for ``--platform arm``, which keeps INT8 Q/DQ fusions that ARM kernels run and leaves out x86's
NCHWc layout, or ``amd64``). It also writes the operator (and, with type reduction, type)
configuration that a reduced ONNX Runtime build is compiled from, so the app ships only the
kernels this model needs: ``build.sh --minimal_build --include_ops_by_config FILE
--enable_reduced_operator_type_support``. The full onnxruntime wheel loads ``.ort`` files, so the
engine is checked here against ONNX Runtime running the parent ONNX, on the parent's validation
inputs, and scored on its labelled split. The source is converted from a private copy: the
converter writes beside the model it reads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, RuntimeUnavailable

log = logging.getLogger(__name__)

# The .ort runs the same graph as the parent after ONNX Runtime's own rewrites (and, for arm, its
# int8 Q/DQ fusions, which round like the Q/DQ emulation they replace): outputs agree closely, and
# a broken conversion (wrong inputs, lost nodes) fails both gates.
MIN_COSINE = 0.99
MIN_TOP1_AGREEMENT = 0.95
CONFIG_NAME = "required_operators_and_types.config"


def import_converter() -> Any:
    """onnxruntime's ORT-format converter, or RuntimeUnavailable naming what to install."""
    try:
        from onnxruntime.tools import convert_onnx_models_to_ort
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"ONNX Runtime's ORT format converter is not available here ({exc}): pip install onnxruntime"
        ) from None
    return convert_onnx_models_to_ort


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
    converter = import_converter()
    model = writer.add("model", "model.ort")
    config = writer.add("operator_config", CONFIG_NAME)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=writer.dir, prefix=".convert-") as work:
        source = Path(work) / "source" / "model.onnx"  # the converter writes beside what it reads: a copy
        source.parent.mkdir()
        shutil.copyfile(artifact.file("model"), source)
        out = Path(work) / "out"
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                converter.convert_onnx_models_to_ort(
                    source,
                    output_dir=out,
                    optimization_styles=[converter.OptimizationStyle.Fixed],
                    target_platform=settings.platform,
                    enable_type_reduction=settings.type_reduction,
                )
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ExportError(
                f"{artifact.path}: ONNX Runtime cannot convert this model to the ORT format: {detail}"
            ) from None
        produced = sorted(out.glob("*.ort"))
        configs = sorted(out.glob("*.config"))
        if len(produced) != 1 or len(configs) != 1:
            raise ExportError(
                f"{artifact.path}: the ORT converter wrote {len(produced)} .ort and {len(configs)} config files, "
                f"expected one of each ({printed.getvalue().strip().splitlines()[-1:] or 'no output'})"
            )
        shutil.move(str(produced[0]), model)
        # The converter's header names the temporary path it read: the artifact says what it ships.
        lines = configs[0].read_text().splitlines()
        header = ["# Generated by onnxruntime.tools.convert_onnx_models_to_ort from model.ort"]
        config.write_text("\n".join(header + [line for line in lines if not line.startswith("#")]) + "\n")
    seconds = time.perf_counter() - started
    writer.carry(artifact)
    ops = operator_config(config)
    record = {
        "target": "ort-mobile",
        "tool": "onnxruntime.tools.convert_onnx_models_to_ort (optimization style fixed)",
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
    manifest["validation"], manifest["metrics"] = validate_against_onnxruntime(
        artifact, staged, OrtMobileBackend(staged), options.validation_samples, MIN_COSINE, MIN_TOP1_AGREEMENT
    )
    log.info(
        "converted %s to the ORT format for %s in %.1f s (%d operator kinds)",
        writer.out,
        settings.platform,
        seconds,
        ops["operators"],
    )
    return manifest
