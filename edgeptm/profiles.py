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
from edgeptm.targets.common import OptionError

QUANT_MODES = ("dynamic-int8", "static-int8", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
RUNTIMES = ("onnxruntime", "torch")  # run artifacts as they are; the targets' engines run on their own runtime
FAMILIES = ("cpu", "gpu", "jetson")


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
    activations: Optional[str] = None  # static-int8: uint8 (default, ONNX Runtime CPU) | int8 (symmetric)


@dataclass(frozen=True)
class CompileSection:
    """How ``compile`` builds an engine for this device (unset target: ONNX Runtime runs the ONNX).

    ``target``, ``precision``, ``batch`` and ``seq_len`` are every target's; any other key belongs to
    a target's own options (``edgeptm.targets``), given flat in the YAML (``workspace_mb: 1024``),
    kept in ``options`` as written and readable as attributes (``profile.compile.workspace_mb``)."""

    target: Optional[str] = None  # one of the registered targets (edgeptm.targets)
    precision: Optional[str] = None  # for targets with precisions: fp32 | bf16 | int8 ...
    batch: Optional[list[int]] = None  # [min, opt, max] of the batch axis
    seq_len: Optional[list[int]] = None  # text: [min, opt, max] of the sequence axis
    options: dict[str, Any] = field(default_factory=dict)  # the target's own keys, as written

    def settings_for(self, target: str) -> Any:
        """The target's options with this section's values (None when none of its keys is set and
        it is not the section's target)."""
        from edgeptm import targets

        owner = targets.get(target)
        given = {k: v for k, v in self.options.items() if k in owner.options.keys()}
        if not given and self.target != target:
            return None
        return owner.options(**given)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "options":
            raise AttributeError(name)
        from edgeptm import targets

        owners = targets.option_keys().get(name)
        if owners is None:
            raise AttributeError(name)
        if name in self.options:
            return self.options[name]
        owner = next((t for t in owners if t.name == self.target), None)
        return None if owner is None else getattr(owner.options(), name)


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
        written = data["compile"].pop("options")
        settings = self.compile.settings_for(self.compile.target) if self.compile.target else None
        # flat, as written; with a target, every one of its settings (its defaults filled in)
        data["compile"].update(dataclasses.asdict(settings) if settings is not None else written)
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
    compile_section = data.pop("compile", None)
    profile = _build(Profile, data, f"{path}")
    if compile_section is not None:
        profile = dataclasses.replace(profile, compile=_compile_section(compile_section, f"{path}"))
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
    from edgeptm import targets

    backends = (*RUNTIMES, *targets.names())
    if profile.runtime.backend not in backends:
        raise ProfileError(f"{path}: runtime.backend '{profile.runtime.backend}' is not one of {', '.join(backends)}")
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


def _compile_section(data: Any, where: str) -> CompileSection:
    """The ``compile`` mapping: the common keys typed as the dataclass says, every other key checked
    by the target that owns it (its options dataclass: types, ranges, combinations)."""
    from edgeptm import targets

    if not isinstance(data, dict):
        raise ProfileError(f"{where}: 'compile' must be a mapping, got {type(data).__name__}")
    common = {f.name for f in dataclasses.fields(CompileSection) if f.name != "options"}
    section = _build(CompileSection, {k: v for k, v in data.items() if k in common}, where, "compile.")
    target = targets.find(section.target)
    if section.target is not None and target is None:
        raise ProfileError(f"{where}: compile.target '{section.target}' is not one of {', '.join(targets.names())}")
    own = {k: v for k, v in data.items() if k not in common}
    keys = targets.option_keys()
    for key in own:
        if key not in keys:
            allowed = sorted(common | set(target.options.keys() if target else keys))
            raise ProfileError(f"{where}: unknown key 'compile.{key}' (allowed in compile: {', '.join(allowed)})")
        if target is not None and target not in keys[key]:
            owners = " or ".join(t.name for t in keys[key])
            raise ProfileError(f"{where}: compile.{key} is for compile.target {owners}, not {target.name}")
    # With a target, its options check the keys; without one, each key's owner does.
    for owner in [target] if target else list(dict.fromkeys(t for key in own for t in keys[key][:1])):
        values = {k: v for k, v in own.items() if k in owner.options.keys()}
        hints = typing.get_type_hints(owner.options)
        typed = {k: _coerce(hints[k], v, where, f"compile.{k}") for k, v in values.items()}
        try:
            owner.options(**typed).check(combined=False)  # combinations: the target's check_profile
        except OptionError as exc:
            raise ProfileError(f"{where}: compile.{exc.key} {exc.text}") from None
        own.update(typed)
    return dataclasses.replace(section, options=own)


def _check_compile(profile: Profile, path: Path) -> None:
    from edgeptm import targets

    device, section = profile.device, profile.compile
    precisions = tuple(dict.fromkeys(p for t in targets.TARGETS.values() for p in t.precisions))
    choices = {
        "device.family": (device.family, FAMILIES),
        "compile.precision": (section.precision, (None, *precisions)),
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
    if device.compute_capability is not None and not re.fullmatch(r"\d+\.\d+", device.compute_capability):
        raise ProfileError(f"{path}: device.compute_capability must look like '8.7', got {device.compute_capability!r}")


def _check_targets(profile: Profile, path: Path) -> None:
    """Settings that are valid alone but cannot work together: the runtime and the target, the
    precision and the target, and what each target says of the device and the quantization."""
    from edgeptm import targets

    section = profile.compile
    backend = profile.runtime.backend
    if backend in targets.TARGETS and section.target != backend:
        raise ProfileError(
            f"{path}: runtime.backend '{backend}' runs an engine that 'compile' builds: set compile.target: {backend}"
        )
    target = targets.find(section.target)
    if section.precision is not None and (target is None or not target.precisions):
        takes = " or ".join(t.name for t in targets.TARGETS.values() if t.precisions)
        why = f": {target.no_precision}" if target is not None and target.no_precision else ""
        raise ProfileError(f"{path}: compile.precision is for compile.target {takes}, not {section.target}{why}")
    for candidate in targets.TARGETS.values():
        problem = candidate.check_profile(profile)
        if problem:
            raise ProfileError(f"{path}: {problem}")


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


def _span(name: str, value: list[int] | None, default: str) -> str:
    if value is None:
        return f"{name} {default}"
    low, opt, high = value
    if low == high:
        return f"{name} {low} (static)"
    return f"{name} {low}..{high} (tuned for {opt})"


def explain(profile: Profile) -> list[str]:
    """The profile in plain words, one ``topic: text`` line per choice: the device, the runtime and
    why, the precision per task and what the target makes of it, shapes, build settings,
    threads, the bench, what the device needs installed, and the command that uses the profile.
    Returned, not printed: the CLI prints (``edgeptm profiles show``)."""
    from edgeptm import targets

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

    target = targets.find(section.target)
    words = target.explain(profile) if target else {}
    if target:
        lines += words["runtime"]
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
            "symmetric int8 activations (zero point 0: the only form some GPU compilers build)"
            if quant.activations == "int8"
            else "uint8 activations (ONNX Runtime CPU's u8 x s8 kernels)"
        )
    if quant.mode != "fp16":
        how.append("per-channel weight scales" if quant.per_channel else "per-tensor weight scales")
    ort = f"{_MODE_WORDS[quant.mode]}" + (f"; {', '.join(how)}" if how else "")
    if "precision" in words:  # the target builds its own precision: ONNX Runtime's artifacts are the comparison
        lines += words["precision"]
        lines.append(f"compared with: ONNX Runtime artifacts built beside it, {ort}")
    else:
        lines.append(f"precision: {ort}")
    if quant.max_accuracy_drop is not None:
        compiled = "precision" in words and section.precision not in (None, "fp32")
        stages = "quantize and compile write" if compiled else "quantize writes"
        lines.append(
            f"accuracy guard: {stages} nothing if accuracy drops more than {quant.max_accuracy_drop:g} "
            f"point{'' if quant.max_accuracy_drop == 1 else 's'}"
        )
    lines += words.get("notes", [])

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
    lines += words.get("build", [])

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
