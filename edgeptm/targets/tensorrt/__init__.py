"""TensorRT: an engine built from an ONNX artifact for one NVIDIA GPU (``build.py``), run by
``backend.py``. This module is the descriptor the registry reads; it imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from edgeptm.targets.common import OptionError, Target, TargetOptions, option


HARDWARE_COMPATIBILITY = ("none", "ampere_plus", "same_compute_capability")
DEFAULT_WORKSPACE_MB = 2048
DEFAULT_OPTIMIZATION_LEVEL = 3  # TensorRT's own default; 4-5 search longer for faster kernels


@dataclass(frozen=True)
class TensorRTOptions(TargetOptions):
    workspace_mb: int = option(DEFAULT_WORKSPACE_MB, "builder scratch memory, MB", low=1)
    optimization_level: int = option(DEFAULT_OPTIMIZATION_LEVEL, "builder optimization level 0-5", low=0, high=5)
    dla_core: Optional[int] = option(None, "run on this DLA core (Jetson AGX/NX)", low=0)
    gpu_fallback: bool = option(True, "with a DLA core, layers it lacks run on the GPU")
    hardware_compatibility: str = option(
        "none", "which GPUs the engine may run on [the one it is built on]", choices=HARDWARE_COMPATIBILITY
    )
    version_compatible: bool = option(False, "the engine also runs on later TensorRT of the same major version")
    cuda_graph: bool = option(False, "the backend replays a captured CUDA graph")
    timing_cache: Optional[str] = option(None, "timing cache file [one per GPU arch and version]", path=True)

    def combined(self) -> None:
        if self.dla_core is not None and self.hardware_compatibility != "none":
            raise OptionError(
                "dla_core", "ties the engine to its Jetson: hardware_compatibility must be 'none' with a DLA core"
            )


def check_runtime(options: Any) -> None:
    from edgeptm.targets.tensorrt._runtime import gpu_identity, import_tensorrt

    import_tensorrt()
    gpu_identity()


def check_profile(profile: Any) -> str | None:
    """What a profile asks of TensorRT that its device or its quantization cannot give."""
    device, section, quant = profile.device, profile.compile, profile.quantize
    settings = section.settings_for("tensorrt")
    if settings is not None and settings.dla_core is not None:
        if device.dla_cores == 0:
            return "compile.dla_core is set but the device has no DLA (device.dla_cores: 0)"
        if not settings.dla_core < device.dla_cores:
            return (
                f"compile.dla_core {settings.dla_core}, but the device has {device.dla_cores} DLA cores "
                "(numbered from 0)"
            )
        if settings.hardware_compatibility != "none":
            return (
                f"compile.hardware_compatibility '{settings.hardware_compatibility}' with compile.dla_core: "
                "a DLA engine is tied to its Jetson, set hardware_compatibility: none"
            )
        if section.batch is None:
            return "compile.dla_core needs static shapes (DLA runs no others): set compile.batch to [n, n, n]"
        for key in ("batch", "seq_len"):
            value = getattr(section, key)
            if value is not None and value[0] != value[2]:
                return (
                    f"compile.{key} {value} is dynamic, but DLA runs only static shapes: "
                    "make min == opt == max, or remove compile.dla_core to build for the GPU"
                )
    if section.target != "tensorrt":
        return None
    if device.family == "cpu":
        return "compile.target 'tensorrt' needs an NVIDIA GPU, but device.family is 'cpu' (use gpu or jetson)"
    if quant.mode == "dynamic-int8":
        return (
            "quantize.mode 'dynamic-int8' is an ONNX Runtime CPU form TensorRT does not build; "
            "use static-int8 or fp16 with compile.target 'tensorrt'"
        )
    if quant.mode == "static-int8" and quant.activations != "int8":
        return (
            f"quantize.activations '{quant.activations or 'uint8'}' with compile.target 'tensorrt': "
            "TensorRT builds symmetric INT8 only, set quantize.activations: int8"
        )
    return None


_HARDWARE_WORDS = {
    "none": "runs only on the GPU model it was built on (the fastest engine)",
    "ampere_plus": "one engine for any Ampere or newer GPU (a mixed fleet; costs some speed)",
    "same_compute_capability": "runs on any GPU with the compute capability of the one that built it",
}


def _precision_words(mode: str | None, family: str, dla: bool) -> list[str]:
    """What TensorRT 10 and 11 build from the graph that ``quantize`` wrote."""
    if mode in (None, "dynamic-int8"):
        return [
            "TensorRT: static INT8 Q/DQ (images) builds as INT8; dynamic INT8 (text) is an ONNX Runtime "
            "form TensorRT does not build: set quantize.mode to static-int8 or fp16 for text"
        ]
    if mode == "static-int8":
        ten = "the builder's INT8 flag" + (" (and FP16, which the DLA needs)" if dla else "")
        ten += " allows INT8; the Q/DQ nodes fix where it runs"
        eleven = "no precision flags: the network is strongly typed, INT8 between Q/DQ nodes, float elsewhere"
    else:
        ten = "the builder's FP16 flag lets layers run in FP16 (the graph's float16 tensors)"
        eleven = "no precision flags: the network is strongly typed, the graph's float16 tensors are the precision"
    lines = [f"TensorRT 10: {ten}", f"TensorRT 11: {eleven}"]
    if family == "jetson":
        lines[-1] += " (TensorRT 11 does not support JetPack 6: Jetsons stay on TensorRT 10.x)"
    return lines


def explain(profile: Any) -> dict[str, list[str]]:
    device, section = profile.device, profile.compile
    settings = section.settings_for("tensorrt") or TensorRTOptions()
    if settings.hardware_compatibility != "none":
        where = "build it on one of the GPUs it targets (see compatibility)"
    else:
        where = "on the device itself" if device.family == "jetson" else "on a machine with this GPU"
        where = f"build it {where}, since an engine is tied to the GPU and the TensorRT version that built it"
    workspace = f"{settings.workspace_mb} MB" if "workspace_mb" in section.options else "TensorRT's default"
    level = (
        settings.optimization_level
        if "optimization_level" in section.options
        else f"{DEFAULT_OPTIMIZATION_LEVEL} (TensorRT's default)"
    )
    build = [
        f"build: workspace {workspace} for the builder's tactics; optimization level {level} "
        "(0..5: higher searches longer for faster kernels)"
    ]
    if settings.dla_core is not None:
        fallback = (
            "layers the DLA cannot run fall back to the GPU"
            if settings.gpu_fallback
            else "no GPU fallback: the build fails if a layer cannot run on the DLA"
        )
        build.append(f"DLA use: the engine runs on DLA core {settings.dla_core}; {fallback}")
    elif device.dla_cores:
        build.append("DLA use: none, everything on the GPU (set compile.dla_core to use a DLA)")
    version = (
        "also on later TensorRT releases of the same major version"
        if settings.version_compatible
        else "only on the TensorRT version that built it"
    )
    build.append(f"compatibility: {_HARDWARE_WORDS[settings.hardware_compatibility]}; {version}")
    if settings.cuda_graph:
        build.append("CUDA graphs: each shape's kernel launches are captured once and replayed")
    return {
        "runtime": [f"runtime: TensorRT: 'compile' builds an engine from the ONNX, tuned for the GPU; {where}"],
        "notes": _precision_words(profile.quantize.mode, device.family, settings.dla_core is not None),
        "build": build,
    }


def summary(info: dict[str, Any]) -> tuple[str, str]:
    return (
        f"TensorRT {info['tensorrt']}, {info['gpu']} (cc {info['compute_capability']}), {info['network']}",
        "ONNX Runtime",
    )


TARGET = Target(
    name="tensorrt",
    title="TensorRT",
    compiles_from="onnx",
    accepts="an ONNX artifact (FP32, FP16 or INT8 Q/DQ)",
    build="edgeptm.targets.tensorrt.build:build",
    backend="edgeptm.targets.tensorrt.backend:TensorRTBackend",
    native_code="edgeptm.targets.tensorrt.backend:native_code",
    summary=summary,
    explain=explain,
    help=(
        "--target tensorrt: SOURCE is an ONNX artifact (FP32, FP16, or INT8 Q/DQ from 'quantize --mode "
        "static-int8 --activations int8'); the engine is built for this GPU and TensorRT version, with one "
        "optimization profile over the shape ranges, and checked against ONNX Runtime. Needs: pip install "
        "'edgeptm[tensorrt]'."
    ),
    options=TensorRTOptions,
    no_precision=(
        "TensorRT builds the precision of the ONNX graph it is given (quantize it first; in a profile: quantize.mode)"
    ),
    no_calib="TensorRT builds the Q/DQ graph that 'quantize --mode static-int8 --calib PATH' writes",
    build_from="quantize",
    check_runtime=check_runtime,
    check_profile=check_profile,
    packages=("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    install="'edgeptm[tensorrt]'",
    devices=("gpu", "jetson"),
    recipes=lambda task, profile, shapes: [("fp32 graph", "fp32", []), ("int8 Q/DQ graph", "int8", [])],
)
