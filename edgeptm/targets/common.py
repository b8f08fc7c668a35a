"""What every target declares: the descriptor it exports and its options' base.

A target is one package under ``edgeptm/targets/<name>/``: its ``__init__`` holds the descriptor
(light: it imports nothing but this module, so the registry loads without the runtimes, and
without artifacts or profiles), ``build.py`` turns an artifact into an engine, ``backend.py`` runs
it, and private modules hold what those two share. What every build shares is in ``engine.py``.
The registry (``edgeptm.targets``) is the only list of them; the stages, the CLI, profiles,
``load()`` and reports ask it.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from edgeptm.errors import UsageError


class OptionError(ValueError):
    """A target option with a value it cannot take: ``key`` is the option's field name, ``text``
    the rest of the sentence; the CLI says ``--key text``, a profile ``FILE: compile.key text``."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(f"{key} {text}")
        self.key, self.text = key, text

    def for_cli(self) -> str:
        return f"--{self.key.replace('_', '-')} {self.text}"


def option(
    default: Any = None,
    help: str = "",  # noqa: A002 - click's word
    *,
    choices: tuple[str, ...] | None = None,
    low: int | None = None,
    high: int | None = None,
    path: bool = False,
) -> Any:
    """A target option: one dataclass field that is a CLI option (``--name``, or ``--name/--no-name``
    for booleans) and a key of the profile's ``compile`` section, with its checks."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "path": path}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TargetOptions:
    """Base of every target's options. Fields are declared with ``option()``; ``check()`` validates
    each value and the combinations (``combined``), raising OptionError."""

    def check(self, combined: bool = True) -> None:
        """Each value against its declaration, then (``combined``) the combinations; a profile checks
        combinations itself, with its keys' names (``Target.check_profile``)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            kind = _base_type(hints[f.name])
            if kind is bool and not isinstance(value, bool):
                raise OptionError(f.name, f"must be true or false, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise OptionError(f.name, f"must be an integer, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise OptionError(f.name, f"must be a string, got {value!r}")
            if meta.get("choices") and value not in meta["choices"]:
                raise OptionError(f.name, f"'{value}' is not one of {', '.join(meta['choices'])}")
            low, high = meta.get("low"), meta.get("high")
            if low is not None and high is not None and not low <= value <= high:
                raise OptionError(f.name, f"must be {low}..{high}, got {value}")
            if low is not None and value < low:
                raise OptionError(f.name, f"must be >= {low}, got {value}")
        if combined:
            self.combined()

    def combined(self) -> None:
        """Checks of several options together (override)."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def paths(self) -> dict[str, str]:
        """The options that name files the target reads and writes back (``option(path=True)``, e.g. a
        timing cache): the stage keeps them off its inputs and out of artifacts."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("path") and getattr(self, f.name) is not None
        }


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


@dataclass(frozen=True)
class NoOptions(TargetOptions):
    """A target without options of its own."""


def _nothing(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class Target:
    """One compile target: what it compiles from, its options, precisions and calibration, how to
    check the runtime is here, build, open, explain and summarise. ``build``, ``backend`` and
    ``native_code`` are ``module:attribute`` strings, imported only when used."""

    name: str  # the CLI's, profiles' and manifests' name: --target NAME, compile.target: NAME
    title: str  # the runtime in words, as users know it
    compiles_from: str  # the artifact kind it reads: "onnx" | "checkpoint"
    accepts: str  # what that is, in words, for the refusal
    build: str  # "module:function": (artifact, writer, CompileOptions) -> manifest
    backend: str  # "module:Class": (artifact, threads=None) -> Backend
    summary: Callable[[dict[str, Any]], tuple[str, str]]  # compile record -> (what the engine is, validated against)
    # profile (edgeptm.profiles.Profile) -> {"runtime"|"precision"|"notes"|"build": lines}
    explain: Callable[[Any], dict[str, list[str]]]
    help: str  # one paragraph for 'compile --help'
    options: type[TargetOptions] = NoOptions
    # --precision values it builds (fp32 first, the default); () = the precision of its source graph
    precisions: tuple[str, ...] = ()
    no_precision: str = ""  # why --precision is refused, when precisions is ()
    no_calib: str = ""  # why --calib is refused, when it calibrates nothing
    builds_as: str = ""  # who builds the precisions, in words (default: the title)
    calibrates: Callable[[str, str], bool] = lambda task, precision: False  # (task, precision) -> needs data
    default_calib_samples: int | None = None
    # Which of build's artifacts it compiles: "checkpoint", "export" (the FP32 ONNX) or "quantize"
    build_from: str = "quantize"
    check_runtime: Callable[[TargetOptions], None] = _nothing  # raises RuntimeUnavailable
    check_profile: Callable[[Any], str | None] = _nothing  # profile -> what its device cannot run, in words
    native_code: str | None = None  # "module:function": what native code loading an engine maps (trust)
    packages: tuple[str, ...] = ()  # distributions the environment record and reports list
    install: str = ""  # what to pip install when its backend cannot import
    # "module:function" building a generator's engine from a causal LM checkpoint ("": refused)
    generator_build: str = ""
    # compile record -> the flags (beyond --target) that rebuild the engine when no profile made it
    rebuild_flags: Callable[[dict[str, Any]], str] = lambda info: ""
    # optimize: the device families (a profile's device.family) it serves, and the builds worth trying
    # there: (task, profile, shape flags) -> [(label, source, compile flags)]; source is "checkpoint",
    # "fp32" (optimize's FP32 export) or "int8" (its static INT8 Q/DQ graph); shape flags: {"static":
    # [one request's fixed shapes], "dynamic": [batch 1, any length up to the model's]}
    devices: tuple[str, ...] = ("cpu",)
    recipes: Callable[[str, Any, dict[str, list[str]]], list[tuple[str, str, list[str]]]] = (
        lambda task, profile, shapes: []
    )
    not_searched: str = ""  # why optimize does not try it, in words
    # "module:function" giving diff the tensors an engine computes, by the ONNX names they came from:
    # (artifact, names, feeds, threads) -> per feed {name: array} ("": outputs only)
    intermediates: str = ""

    def load(self, which: str) -> Any:
        """The build function, the backend class or the native-code lister, imported now."""
        spec = getattr(self, which)
        module, _, attribute = spec.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def make_options(self, values: dict[str, Any], where: Callable[[OptionError], str]) -> TargetOptions:
        """The target's options from ``values`` (unknown keys refused), checked; ``where`` words an error."""
        try:
            options = self.options(**values)
            options.check()
        except OptionError as exc:
            raise UsageError(where(exc)) from None
        return options
