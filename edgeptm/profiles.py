"""Device profiles: ``export_profiles/*.yaml`` parsed into frozen, validated dataclasses.

A profile fixes the choices one device family wants (opset, quantization mode, threads, bench
shapes). Command-line options override it; the profile overrides edgeptm's defaults. Unknown keys
and wrong types are errors that name the file and the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeptm.errors import ProfileError

QUANT_MODES = ("dynamic-int8", "static-int8", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
BACKENDS = ("onnxruntime", "torch")


@dataclass(frozen=True)
class DeviceSection:
    family: str = "cpu"
    arch: str = "x86_64"
    cpu_flags: list[str] = field(default_factory=list)
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
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    bench: BenchSection = field(default_factory=BenchSection)
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
    if profile.quantize.mode not in (None, *QUANT_MODES):
        raise ProfileError(f"{path}: quantize.mode '{profile.quantize.mode}' is not one of {', '.join(QUANT_MODES)}")
    if profile.runtime.backend not in BACKENDS:
        raise ProfileError(f"{path}: runtime.backend '{profile.runtime.backend}' is not one of {', '.join(BACKENDS)}")
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
