"""TensorRT: build a serialized engine from an ONNX artifact with the TensorRT Python API.

Precision lives in the graph (ARCHITECTURE.md): ``quantize`` writes INT8 as Q/DQ nodes or FP16 as
half tensors, and this builds what the graph says. TensorRT 11 networks are always strongly typed
(its FP16/INT8 builder flags are gone); on TensorRT 10 the same graph is built weakly typed with
the FP16/INT8 flags its precision calls for. One optimization profile covers every dynamic axis
(compile/shapes.py); the timing cache of this GPU and TensorRT version is reused across builds;
Jetson profiles can put the network on a DLA core with GPU fallback.

An engine runs only on the TensorRT version and GPU architecture it was built for (unless built
version- or hardware-compatible): the manifest records both, and the backend refuses a mismatch
with the command that rebuilds it. TensorRT is imported lazily: nothing else needs it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, UsageError
from edgeptm.targets.tensorrt._runtime import _logger, gpu_identity, import_tensorrt, major
from edgeptm.targets.engine import engine_manifest, graph_precision, validate_against_onnxruntime

log = logging.getLogger(__name__)

# The engine is checked against ONNX Runtime on the parent's validation inputs. FP32 engines use
# TF32 tensor cores on Ampere and later (~1e-3 relative error), INT8 kernels round differently
# from ONNX Runtime's Q/DQ emulation: so the gate is on cosine similarity and top-1 agreement,
# with the max difference recorded; a broken engine (wrong input binding, bad fusion) fails both.
MIN_COSINE = 0.99
MIN_TOP1_AGREEMENT = 0.95
HARDWARE_LEVELS = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}


def check_buildable(info: dict[str, Any], where: str) -> None:
    """Refuse graphs TensorRT cannot build, saying how to export or quantize for it instead."""
    if info["onnxruntime_ops"]:
        raise UsageError(
            f"{where}: the graph holds ONNX Runtime's own fused operators ({', '.join(info['onnxruntime_ops'])}), "
            "which TensorRT's parser does not know: an export from before exports were portable; export the "
            "checkpoint again (model.onnx then holds standard ONNX operators; --no-optimize also skips ONNX "
            "Runtime's derived graph), then quantize and compile that"
        )
    if info["dynamic_int8_nodes"]:
        raise UsageError(
            f"{where}: dynamic INT8 ({info['dynamic_int8_nodes']} MatMulInteger/DynamicQuantizeLinear nodes) is an "
            "ONNX Runtime CPU format TensorRT cannot build; compile the FP32 ONNX artifact, or quantize it with "
            "--mode static-int8 --activations int8 (or --mode fp16) for TensorRT"
        )
    if info["asymmetric_quantize_nodes"]:
        first = info["asymmetric_quantize_nodes"][0]
        raise UsageError(
            f"{where}: {len(info['asymmetric_quantize_nodes'])} QuantizeLinear nodes (first: {first}) use uint8 or a "
            "non-zero zero point; TensorRT takes symmetric INT8 only: quantize with --mode static-int8 "
            "--activations int8"
        )


def builder_flags(info: dict[str, Any], trt_major: int, dla: bool) -> list[str]:
    """TensorRT 10's precision flags for a graph (TensorRT 11 builds strongly typed: none)."""
    if trt_major >= 11:
        return []
    flags = []
    if info["qdq_nodes"]:
        flags.append("INT8")
    if info["fp16_tensors"] or dla:  # DLA runs FP16 and INT8 only
        flags.append("FP16")
    return flags


def timing_cache_path(explicit: str | None, trt_version: str, gpu: dict[str, Any]) -> Path:
    """One cache per TensorRT version and GPU architecture (a cache from another is useless)."""
    if explicit:
        return Path(explicit)
    from edgeptm.data.demo import cache_dir

    arch = f"sm{gpu['compute_capability'].replace('.', '')}"
    return cache_dir() / "tensorrt" / f"timing-trt{trt_version}-{arch}.cache"


def parse_errors(parser: Any) -> list[str]:
    """One line per ONNX parser error, naming the node (index, name, operator)."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node()
        name = error.node_name() if hasattr(error, "node_name") else ""
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        where = f"node {node}" + (f" '{name}'" if name else "") + (f" ({op})" if op else "") if node >= 0 else "model"
        lines.append(f"{where}: {error.desc()} [{str(error.code()).split('.')[-1]}]")
    return lines


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def build_engine(onnx_path: Path, ranges: dict[str, dict[str, list[int]]], settings: dict[str, Any]) -> tuple:
    """Parse, configure and build; returns (serialized engine bytes, record of what was done)."""
    trt = import_tensorrt()
    gpu = gpu_identity()
    trt_major = major(trt.__version__)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 11: networks are strongly typed, always. TensorRT 10: weakly typed plus flags.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        lines = parse_errors(parser) or logger.errors or ["no detail"]
        raise ExportError(
            f"{onnx_path}: TensorRT {trt.__version__} cannot parse this ONNX model: "
            + "; ".join(lines[:5])
            + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else "")
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings["workspace_mb"] << 20)
    config.builder_optimization_level = settings["optimization_level"]

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in ranges:
            raise ExportError(f"{onnx_path}: TensorRT sees an input '{tensor.name}' the manifest does not list")
        r = ranges[tensor.name]
        profile.set_shape(tensor.name, r["min"], r["opt"], r["max"])
    config.add_optimization_profile(profile)

    flags = builder_flags(settings["graph"], trt_major, settings["dla_core"] is not None)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if settings["dla_core"] is not None:
        if builder.num_DLA_cores <= settings["dla_core"]:
            raise UsageError(
                f"--dla-core {settings['dla_core']}: this device has {builder.num_DLA_cores} DLA cores "
                "(Jetson AGX Orin and Orin NX have 2; Orin Nano has none)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings["dla_core"]
        if settings["gpu_fallback"]:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
            flags.append("GPU_FALLBACK")
    level = HARDWARE_LEVELS[settings["hardware_compatibility"]]
    if not hasattr(trt.HardwareCompatibilityLevel, level):  # SAME_COMPUTE_CAPABILITY is a later 10.x addition
        raise UsageError(
            f"hardware_compatibility {settings['hardware_compatibility']}: TensorRT {trt.__version__} does not "
            "offer it; use none or ampere_plus"
        )
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    if settings["version_compatible"]:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        flags.append("VERSION_COMPATIBLE")

    cache_path = timing_cache_path(settings["timing_cache"], trt.__version__, gpu)
    previous = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(previous)
    config.set_timing_cache(cache, ignore_mismatch=False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "no detail from the builder"
        raise ExportError(f"{onnx_path}: TensorRT {trt.__version__} failed to build an engine: {detail}")
    _write_atomically(cache_path, bytes(config.get_timing_cache().serialize()))
    tf32 = hasattr(trt.BuilderFlag, "TF32") and config.get_flag(trt.BuilderFlag.TF32)
    record = {
        "tensorrt": trt.__version__,
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "network": "strongly typed" if trt_major >= 11 else "weakly typed, precision from builder flags",
        "builder_flags": flags + (["TF32"] if tf32 else []),
        "build_seconds": round(seconds, 1),
        "timing_cache": {"path": str(cache_path), "reused": bool(previous)},
    }
    return bytes(serialized), record


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import dataclasses

    import onnx

    from edgeptm.compile.shapes import shape_ranges

    model_path = artifact.file("model")
    info = graph_precision(onnx.load(str(model_path), load_external_data=False))
    check_buildable(info, str(artifact.path))
    settings = dataclasses.asdict(options.settings)  # checked by TensorRTOptions when compile resolved them
    ranges = shape_ranges(artifact.manifest["io"]["inputs"], artifact.preprocessing, **options.shape_sources())
    import_tensorrt()  # everything above runs without TensorRT: errors in the request come first
    engine_bytes, record = build_engine(model_path, ranges, {**settings, "graph": info})
    _write_atomically(writer.add("model", "model.engine"), engine_bytes)
    writer.carry(artifact)
    manifest = engine_manifest(
        artifact,
        {
            "target": "tensorrt",
            "tool": "tensorrt.Builder + OnnxParser",
            **record,
            "graph": {k: v for k, v in info.items() if k not in ("asymmetric_quantize_nodes", "onnxruntime_ops")},
            "shapes": ranges,
            **{k: v for k, v in settings.items() if k != "timing_cache"},
        },
    )
    from edgeptm.targets.tensorrt.backend import TensorRTBackend

    staged = writer.preview("engine", manifest)
    manifest["validation"], manifest["metrics"] = validate_against_onnxruntime(
        artifact, staged, TensorRTBackend(staged), options.validation_samples, MIN_COSINE, MIN_TOP1_AGREEMENT
    )
    log.info("built %s with TensorRT %s in %.1f s", writer.out, record["tensorrt"], record["build_seconds"])
    return manifest


__all__ = ["build", "build_engine", "check_buildable", "graph_precision"]
