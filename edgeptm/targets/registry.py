"""The registry of compile targets: the only list of them (``edgeptm.targets`` re-exports it).

Each target is a package here that exports one ``TARGET`` descriptor (``edgeptm.targets.common.Target``):
a new runtime is its package plus one line in ``_PACKAGES``. ``compile``, ``build``, profiles, the CLI,
``load()``, reports and the environment record ask this module; nothing else names a target.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeptm.errors import UsageError
from edgeptm.targets.common import Target, TargetOptions

_PACKAGES = ("tensorrt", "aoti", "openvino", "executorch", "ort_mobile")


def _load() -> dict[str, Target]:
    found = {}
    for package in _PACKAGES:
        target = importlib.import_module(f"edgeptm.targets.{package}").TARGET
        found[target.name] = target
    return found


TARGETS: dict[str, Target] = _load()
DEFAULT = "aoti"  # compile's target when neither --target nor the profile names one


def names() -> tuple[str, ...]:
    return tuple(TARGETS)


def get(name: str) -> Target:
    """The target called ``name``; an unknown name is one line listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"--target {name}: not one of {', '.join(TARGETS)}") from None


def find(name: str | None) -> Target | None:
    return TARGETS.get(name) if name else None


def owners(key: str) -> list[str]:
    """The targets that own option ``key`` (a field of their options)."""
    return [t.name for t in TARGETS.values() if key in t.options.keys()]


def option_keys() -> dict[str, list[Target]]:
    """Every target option, with the targets that declare it (the CLI adds one flag per key)."""
    keys: dict[str, list[Target]] = {}
    for target in TARGETS.values():
        for key in target.options.keys():
            keys.setdefault(key, []).append(target)
    return keys


def packages() -> tuple[str, ...]:
    """Distributions the targets run on, for the environment record."""
    return tuple(dict.fromkeys(p for t in TARGETS.values() for p in t.packages))


def target_options(target: Target, values: dict[str, Any], flag: bool) -> TargetOptions:
    """``target``'s options from ``values`` (option names; None = not given). A key another target
    owns, or none does, is refused with one line; ``flag`` words errors as CLI flags."""
    for key, value in values.items():
        if key in target.options.keys():
            continue
        shown = f"--{key.replace('_', '-')}" if flag else f"compile.{key}"
        owned = owners(key)
        if not owned:
            raise UsageError(f"{shown}: no target has this option (targets: {', '.join(TARGETS)})")
        if value is not None:
            raise UsageError(f"{shown} is for --target {' or '.join(owned)}, not {target.name}")
    given = {k: v for k, v in values.items() if k in target.options.keys() and v is not None}
    return target.make_options(given, lambda exc: exc.for_cli() if flag else f"compile.{exc.key} {exc.text}")


__all__ = ["DEFAULT", "TARGETS", "find", "get", "names", "option_keys", "owners", "packages", "target_options"]
