"""Device profiles: ``export_profiles/*.yaml`` parsed into frozen, validated dataclasses.

A profile fixes the choices one device family wants (opset, quantization mode, threads, bench
shapes). Command-line options override it; the profile overrides edgeptm's defaults. Unknown keys
and wrong types are errors that name the file and the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeptm.errors import ProfileError

QUANT_MODES = ("dynamic-int8", "static-int8", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
BACKENDS = ("onnxruntime", "torch", "tensorrt", "aoti", "openvino", "executorch")
FAMILIES = ("cpu", "gpu", "jetson")
COMPILE_TARGETS = ("tensorrt", "aoti", "openvino", "executorch")
PRECISIONS = ("fp32", "bf16", "int8")
HARDWARE_COMPATIBILITY = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class DeviceSection:
    family: str = "cpu"  # cpu | gpu | jetson
    arch: str = "x86_64"
    cpu_flags: list[str] = field(default_factory=list)
    gpu: Optional[str] = None  # in words: "Ampere, 1024 CUDA cores, 32 tensor cores"
    compute_capability: Optional[str] = None  # "8.7": engines are built for one
    dla_cores: int = 0  # NVIDIA Deep Learning Accelerators beside the GPU (Jetson AGX/NX)
    memory_gb: Optional[float] = None  # shared with the CPU on a Jetson
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportSection:
    opset: int = 17
    optimize: bool = True


@dataclass(frozen=True)
class QuantizeSection:
    mode: Optional[str] = None  # None: by task (text: dynamic-int8, images: static-int8)
    per_channel: bool = True
    reduce_range: bool = False
    max_accuracy_drop: Optional[float] = None
    calibration_method: Optional[str] = None  # static-int8: minmax | entropy | percentile
    calibration_samples: Optional[int] = None  # static-int8: calibration inputs
    activations: Optional[str] = None  # static-int8: uint8 (default, ONNX Runtime CPU) | int8 (symmetric, TensorRT)


@dataclass(frozen=True)
class CompileSection:
    """How ``compile`` builds an engine for this device (unset target: ONNX Runtime runs the ONNX)."""

    target: Optional[str] = None  # tensorrt | aoti | openvino | executorch
    precision: Optional[str] = None  # openvino: fp32 | bf16 | int8 (NNCF); executorch: fp32 | int8 (PT2E)
    device: str = "cuda"  # aoti: cpu | cuda
    batch: Optional[list[int]] = None  # [min, opt, max] of the batch axis
    seq_len: Optional[list[int]] = None  # text: [min, opt, max] of the sequence axis
    workspace_mb: Optional[int] = None  # TensorRT: scratch memory the builder's tactics may use
    optimization_level: Optional[int] = None  # TensorRT builder optimization level 0..5 (default 3)
    dla_core: Optional[int] = None  # run on this DLA core (Jetson AGX/NX), layers DLA lacks on the GPU
    gpu_fallback: bool = True  # with dla_core: layers the DLA cannot run go to the GPU
    hardware_compatibility: str = "none"  # none | ampere_plus | same_compute_capability
    version_compatible: bool = False  # engine runs on later TensorRT of the same major version
    cuda_graph: bool = False  # the backend captures each shape's launch into a CUDA graph


@dataclass(frozen=True)
class RuntimeSection:
    backend: str = "onnxruntime"
    threads: Optional[int] = None


@dataclass(frozen=True)
class BenchSection:
    batch_size: int = 1
    seq_len: int = 128
    iterations: int = 100
    warmup: int = 10


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    device: DeviceSection = field(default_factory=DeviceSection)
    export: ExportSection = field(default_factory=ExportSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    compile: CompileSection = field(default_factory=CompileSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    bench: BenchSection = field(default_factory=BenchSection)
    requires: list[str] = field(default_factory=list)  # what the device must have installed, in words
    path: Optional[str] = None
    sha256: Optional[str] = None

    def record(self) -> dict[str, Any]:
        """What a manifest keeps of the profile that shaped it."""
        return {"name": self.name, "sha256": self.sha256}

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path")
        data.pop("sha256")
        return data


def profiles_dir() -> Path:
    """Where the shipped profiles live: $EDGEPTM_PROFILES_DIR, the checkout, or the installed package."""
    env = os.environ.get("EDGEPTM_PROFILES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "export_profiles", here / "export_profiles"):
        if candidate.is_dir():
            return candidate
    return here.parent / "export_profiles"


def list_profiles() -> list[Profile]:
    directory = profiles_dir()
    return [load_profile(p) for p in sorted(directory.glob("*.yaml"))]


def load_profile(name_or_path: str | os.PathLike[str]) -> Profile:
    """Load a shipped profile by name (``cpu-arm64``) or any YAML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = profiles_dir() / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(p.stem for p in sorted(profiles_dir().glob("*.yaml"))) or "none"
            raise ProfileError(f"unknown profile '{text}' (known: {known}; or pass a path to a .yaml file)")
    if not path.is_file():
        raise ProfileError(f"{path}: profile file not found")
    import yaml

    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    profile = _build(Profile, data, f"{path}")
    profile = dataclasses.replace(profile, path=str(path), sha256=hashlib.sha256(raw).hexdigest())
    _check_values(profile, path)
    return profile


def _check_values(profile: Profile, path: Path) -> None:
    if profile.quantize.calibration_method not in (None, *CALIBRATION_METHODS):
        raise ProfileError(
            f"{path}: quantize.calibration_method '{profile.quantize.calibration_method}' is not one of "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    if profile.quantize.activations not in (None, *ACTIVATION_TYPES):
        raise ProfileError(
            f"{path}: quantize.activations '{profile.quantize.activations}' is not one of {', '.join(ACTIVATION_TYPES)}"
        )
    if profile.quantize.mode not in (None, *QUANT_MODES):
        raise ProfileError(f"{path}: quantize.mode '{profile.quantize.mode}' is not one of {', '.join(QUANT_MODES)}")
    if profile.runtime.backend not in BACKENDS:
        raise ProfileError(f"{path}: runtime.backend '{profile.runtime.backend}' is not one of {', '.join(BACKENDS)}")
    _check_compile(profile, path)
    _check_targets(profile, path)
    if not 7 <= profile.export.opset <= 23:
        raise ProfileError(f"{path}: export.opset {profile.export.opset} is outside 7..23")
    positives = {
        "bench.batch_size": profile.bench.batch_size,
        "bench.seq_len": profile.bench.seq_len,
        "bench.iterations": profile.bench.iterations,
        "runtime.threads": profile.runtime.threads,
        "quantize.calibration_samples": profile.quantize.calibration_samples,
    }
    for key, value in positives.items():
        if value is not None and value < 1:
            raise ProfileError(f"{path}: {key} must be >= 1, got {value}")
    if profile.bench.warmup < 0:
        raise ProfileError(f"{path}: bench.warmup must be >= 0, got {profile.bench.warmup}")
    drop = profile.quantize.max_accuracy_drop
    if drop is not None and not drop >= 0:  # also NaN: a negative drop demands a gain, and every quantize fails
        raise ProfileError(f"{path}: quantize.max_accuracy_drop must be >= 0 (accuracy points), got {drop:g}")


def _check_compile(profile: Profile, path: Path) -> None:
    device, section = profile.device, profile.compile
    choices = {
        "device.family": (device.family, FAMILIES),
        "compile.target": (section.target, (None, *COMPILE_TARGETS)),
        "compile.device": (section.device, ("cpu", "cuda")),
        "compile.hardware_compatibility": (section.hardware_compatibility, HARDWARE_COMPATIBILITY),
        "compile.precision": (section.precision, (None, *PRECISIONS)),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            shown = ", ".join(str(a) for a in allowed if a is not None)
            raise ProfileError(f"{path}: {key} '{value}' is not one of {shown}")
    for key in ("batch", "seq_len"):
        value = getattr(section, key)
        if value is not None and (len(value) != 3 or not 1 <= value[0] <= value[1] <= value[2]):
            raise ProfileError(
                f"{path}: compile.{key} must be [min, opt, max] with 1 <= min <= opt <= max, got {value}"
            )
    if section.optimization_level is not None and not 0 <= section.optimization_level <= 5:
        raise ProfileError(f"{path}: compile.optimization_level must be 0..5, got {section.optimization_level}")
    if section.workspace_mb is not None and section.workspace_mb < 1:
        raise ProfileError(f"{path}: compile.workspace_mb must be >= 1, got {section.workspace_mb}")
    if section.dla_core is not None and device.dla_cores == 0:
        raise ProfileError(f"{path}: compile.dla_core is set but the device has no DLA (device.dla_cores: 0)")
    if section.dla_core is not None and not 0 <= section.dla_core < device.dla_cores:
        raise ProfileError(
            f"{path}: compile.dla_core {section.dla_core}, but the device has {device.dla_cores} DLA cores "
            "(numbered from 0)"
        )
    if device.compute_capability is not None and not re.fullmatch(r"\d+\.\d+", device.compute_capability):
        raise ProfileError(f"{path}: device.compute_capability must look like '8.7', got {device.compute_capability!r}")


def _check_targets(profile: Profile, path: Path) -> None:
    """Settings that are valid alone but cannot work together."""
    from edgeptm.compile import ONLY_FOR, executorch

    device, section = profile.device, profile.compile
    backend = profile.runtime.backend
    if backend in COMPILE_TARGETS and section.target != backend:
        raise ProfileError(
            f"{path}: runtime.backend '{backend}' runs an engine that 'compile' builds: set compile.target: {backend}"
        )
    takes_precision = " or ".join(ONLY_FOR["precision"])
    if section.precision is not None and section.target not in ONLY_FOR["precision"]:
        raise ProfileError(
            f"{path}: compile.precision is for compile.target {takes_precision}, not {section.target}"
            + (
                ": TensorRT builds the precision of the graph (set quantize.mode)"
                if section.target == "tensorrt"
                else ""
            )
        )
    if section.target == "executorch" and section.precision not in (None, *executorch.PRECISIONS):
        raise ProfileError(
            f"{path}: compile.precision '{section.precision}': ExecuTorch's XNNPACK target builds "
            f"{' or '.join(executorch.PRECISIONS)}"
        )
    if section.target == "tensorrt" and device.family == "cpu":
        raise ProfileError(
            f"{path}: compile.target 'tensorrt' needs an NVIDIA GPU, but device.family is 'cpu' (use gpu or jetson)"
        )
    if section.target == "tensorrt" and profile.quantize.mode == "dynamic-int8":
        raise ProfileError(
            f"{path}: quantize.mode 'dynamic-int8' is an ONNX Runtime CPU form TensorRT does not build; "
            "use static-int8 or fp16 with compile.target 'tensorrt'"
        )
    if (
        section.target == "tensorrt"
        and profile.quantize.mode == "static-int8"
        and profile.quantize.activations != "int8"
    ):
        raise ProfileError(
            f"{path}: quantize.activations '{profile.quantize.activations or 'uint8'}' with compile.target 'tensorrt': "
            "TensorRT builds symmetric INT8 only, set quantize.activations: int8"
        )
    if section.dla_core is not None:
        if section.hardware_compatibility != "none":
            raise ProfileError(
                f"{path}: compile.hardware_compatibility '{section.hardware_compatibility}' with compile.dla_core: "
                "a DLA engine is tied to its Jetson, set hardware_compatibility: none"
            )
        if section.batch is None:
            raise ProfileError(
                f"{path}: compile.dla_core needs static shapes (DLA runs no others): set compile.batch to [n, n, n]"
            )
        for key in ("batch", "seq_len"):
            value = getattr(section, key)
            if value is not None and value[0] != value[2]:
                raise ProfileError(
                    f"{path}: compile.{key} {value} is dynamic, but DLA runs only static shapes: "
                    "make min == opt == max, or remove compile.dla_core to build for the GPU"
                )


def _build(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name not in ("path", "sha256")}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ProfileError(
            f"{where}: unknown key '{prefix}{unknown[0]}' (allowed in {prefix.rstrip('.') or 'top level'}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, where, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return _build(hint, value, where, f"{key}.")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ProfileError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
        return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise ProfileError(f"{where}: '{key}' must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


def resolve_profile(value: str | os.PathLike[str] | Profile | None) -> Profile | None:
    """A Profile from a name, a path, or one already loaded (None stays None)."""
    if value is None or isinstance(value, Profile):
        return value
    return load_profile(value)


def pick(explicit: Any, from_profile: Any, default: Any) -> Any:
    """Option precedence: an explicit option beats the profile, the profile beats the default."""
    if explicit is not None:
        return explicit
    if from_profile is not None:
        return from_profile
    return default


_FAMILY_WORDS = {
    "cpu": "CPU ({arch}{flags})",
    "gpu": "NVIDIA GPU in an {arch} host",
    "jetson": "NVIDIA Jetson: GPU and {arch} CPU on one module",
}
_MODE_WORDS = {
    None: "by task: dynamic INT8 for text, static INT8 Q/DQ for images",
    "dynamic-int8": "dynamic INT8 for every task (INT8 weights, activations scaled per input at run time)",
    "static-int8": "static INT8 Q/DQ for every task (activation ranges calibrated ahead of time)",
    "fp16": "FP16 for every task (float16 weights and activations)",
}
_COMPILED_PRECISION = {  # target -> compile.precision -> what it means there
    "openvino": {
        "fp32": "FP32 IR (OpenVINO runs f32)",
        "bf16": "bf16 inference hint: weights stay FP32 in the IR, the CPU computes in bf16 where it has "
        "AVX512_BF16 or AMX (slower than FP32 without AMX)",
        "int8": "NNCF post-training INT8 in 'compile', calibrated on {samples} samples of the checkpoint's training "
        "sample (text: the transformer scheme with SmoothQuant; images: per-tensor activation ranges)",
    },
    "executorch": {
        "fp32": "FP32 program, XNNPACK's float kernels",
        "int8": "INT8 by PT2E with the XNNPACK quantizer in 'compile' (per-channel weights; images: static "
        "activation scales calibrated on {samples} samples; text: dynamic activations)",
    },
}
_HARDWARE_WORDS = {
    "none": "runs only on the GPU model it was built on (the fastest engine)",
    "ampere_plus": "one engine for any Ampere or newer GPU (a mixed fleet; costs some speed)",
    "same_compute_capability": "runs on any GPU with the compute capability of the one that built it",
}


def _span(name: str, value: list[int] | None, default: str) -> str:
    if value is None:
        return f"{name} {default}"
    low, opt, high = value
    if low == high:
        return f"{name} {low} (static)"
    return f"{name} {low}..{high} (tuned for {opt})"


def explain(profile: Profile) -> list[str]:
    """The profile in plain words, one ``topic: text`` line per choice: the device, the runtime and
    why, the precision per task and what TensorRT 10 and 11 make of it, shapes, build settings,
    threads, the bench, what the device needs installed, and the command that uses the profile.
    Returned, not printed: the CLI prints (``edgeptm profiles show``)."""
    from edgeptm.compile import executorch, openvino

    device, quant, section, runtime, bench = (
        profile.device,
        profile.quantize,
        profile.compile,
        profile.runtime,
        profile.bench,
    )
    on_gpu = device.family in ("gpu", "jetson")
    flags = f"; {', '.join(device.cpu_flags)}" if device.cpu_flags else ""
    lines = [f"device: {_FAMILY_WORDS[device.family].format(arch=device.arch, flags=flags)}"]
    if device.gpu or device.compute_capability:
        cc = device.compute_capability and f"compute capability {device.compute_capability}"
        lines.append("GPU: " + "; ".join(p for p in (device.gpu, cc) if p))
    if device.family == "jetson" or device.dla_cores:
        lines.append(
            f"DLA: {device.dla_cores} cores (Deep Learning Accelerators beside the GPU, built for CNNs)"
            if device.dla_cores
            else "DLA: none (no DLA on this device: everything runs on the GPU)"
        )
    if device.memory_gb is not None:
        shared = ", shared by the CPU and the GPU" if device.family == "jetson" else ""
        lines.append(f"memory: {device.memory_gb:g} GB{shared}")
    if device.examples:
        lines.append(f"examples: {', '.join(device.examples)}")

    if section.target == "tensorrt":
        if section.hardware_compatibility != "none":
            where = "build it on one of the GPUs it targets (see compatibility)"
        else:
            where = "on the device itself" if device.family == "jetson" else "on a machine with this GPU"
            where = f"build it {where}, since an engine is tied to the GPU and the TensorRT version that built it"
        lines.append(f"runtime: TensorRT: 'compile' builds an engine from the ONNX, tuned for the GPU; {where}")
    elif section.target == "aoti":
        lines.append(
            f"runtime: AOTInductor: 'compile' builds a .pt2 package from the PyTorch checkpoint ({section.device})"
        )
    elif section.target == "openvino":
        lines.append(
            "runtime: OpenVINO: 'compile' converts the plain ONNX export into an IR (model.xml + model.bin) for "
            "its CPU plugin, which fuses and specialises kernels on its own; the IR runs on any x86-64 machine with "
            "OpenVINO"
        )
    elif section.target == "executorch":
        lines.append(
            "runtime: ExecuTorch with the XNNPACK delegate: 'compile' builds a .pte program from the PyTorch "
            "checkpoint; the app links the ExecuTorch runtime (Android, iOS, Linux boards)"
        )
    elif runtime.backend == "torch":
        lines.append("runtime: PyTorch (eager) runs the checkpoint; nothing to build")
    else:
        lines.append(
            "runtime: ONNX Runtime runs the ONNX directly; no engine to build, the same file runs on any "
            "machine with ONNX Runtime"
        )

    calibrated = quant.mode in (None, "static-int8")
    how = []
    if calibrated and (quant.calibration_method or quant.calibration_samples):
        method = quant.calibration_method or "minmax"
        samples = f" on {quant.calibration_samples} samples" if quant.calibration_samples else ""
        how.append(f"calibration {method}{samples}" + (" (images)" if quant.mode is None else ""))
    if calibrated:
        how.append(
            "symmetric int8 activations (zero point 0, the form TensorRT builds)"
            if quant.activations == "int8"
            else "uint8 activations (ONNX Runtime CPU's u8 x s8 kernels)"
        )
    if quant.mode != "fp16":
        how.append("per-channel weight scales" if quant.per_channel else "per-tensor weight scales")
    ort = f"{_MODE_WORDS[quant.mode]}" + (f"; {', '.join(how)}" if how else "")
    if section.target in _COMPILED_PRECISION:
        # NNCF takes the profile's calibration_samples; PT2E its own default (its observers are slow).
        samples = (
            (quant.calibration_samples or openvino.DEFAULT_CALIB_SAMPLES)
            if section.target == "openvino"
            else executorch.DEFAULT_CALIB_SAMPLES
        )
        words = _COMPILED_PRECISION[section.target][section.precision or "fp32"].format(samples=samples)
        lines.append(f"precision: {words}")
        lines.append(f"compared with: ONNX Runtime artifacts built beside it, {ort}")
    else:
        lines.append(f"precision: {ort}")
    if quant.max_accuracy_drop is not None:
        compiled = section.target in _COMPILED_PRECISION and section.precision not in (None, "fp32")
        stages = "quantize and compile write" if compiled else "quantize writes"
        lines.append(
            f"accuracy guard: {stages} nothing if accuracy drops more than {quant.max_accuracy_drop:g} "
            f"point{'' if quant.max_accuracy_drop == 1 else 's'}"
        )
    if section.target == "tensorrt":
        lines += _tensorrt_precision(quant.mode, device.family, section.dla_core is not None)

    if section.target:
        lines.append(
            "shapes: "
            + ", ".join(
                (
                    _span("batch", section.batch, "from the compile defaults"),
                    _span("sequence", section.seq_len, "from the model (text)"),
                )
            )
            + ("; the sequence is cut to a model's max length where that is shorter" if section.seq_len else "")
        )
    else:
        lines.append("shapes: dynamic: ONNX Runtime takes any batch and sequence length")
    if section.target == "tensorrt":
        workspace = f"{section.workspace_mb} MB" if section.workspace_mb else "TensorRT's default"
        level = section.optimization_level if section.optimization_level is not None else "3 (TensorRT's default)"
        lines.append(
            f"build: workspace {workspace} for the builder's tactics; optimization level {level} "
            "(0..5: higher searches longer for faster kernels)"
        )
        if section.dla_core is not None:
            fallback = (
                "layers the DLA cannot run fall back to the GPU"
                if section.gpu_fallback
                else "no GPU fallback: the build fails if a layer cannot run on the DLA"
            )
            lines.append(f"DLA use: the engine runs on DLA core {section.dla_core}; {fallback}")
        elif device.dla_cores:
            lines.append("DLA use: none, everything on the GPU (set compile.dla_core to use a DLA)")
        version = (
            "also on later TensorRT releases of the same major version"
            if section.version_compatible
            else "only on the TensorRT version that built it"
        )
        lines.append(f"compatibility: {_HARDWARE_WORDS[section.hardware_compatibility]}; {version}")
        if section.cuda_graph:
            lines.append("CUDA graphs: each shape's kernel launches are captured once and replayed")

    if runtime.threads is None:
        lines.append("threads: the runtime's default")
    elif on_gpu and section.target:
        lines.append(f"threads: {runtime.threads} CPU threads for preprocessing; the GPU runs the model")
    else:
        lines.append(f"threads: {runtime.threads} intra-op threads")
    lines.append(
        f"bench: batch {bench.batch_size}, sequence {bench.seq_len}, {bench.iterations} timed runs "
        f"after {bench.warmup} warm-up runs"
    )
    lines += [f"requires: {item}" for item in profile.requires] or ["requires: nothing beyond edgeptm"]
    name = profile.name
    if profile.path and Path(profile.path).resolve().parent != profiles_dir().resolve():
        name = profile.path
    lines.append(f"use: edgeptm build runs/ckpt --profile {name} --out runs/{profile.name}")
    return lines


def _tensorrt_precision(mode: Optional[str], family: str, dla: bool) -> list[str]:
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
