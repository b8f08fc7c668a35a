"""Compile targets, one package each (``edgeptm/targets/<name>/``), listed by ``registry.py`` alone.

``from edgeptm import targets`` gives the registry's functions: ``targets.get(name)``,
``targets.names()``, ``targets.TARGETS``, ... (see ``registry.py``)."""

from edgeptm.targets.registry import (
    DEFAULT,
    TARGETS,
    find,
    get,
    names,
    option_keys,
    owners,
    packages,
    target_options,
)
from edgeptm.targets.common import OptionError, Target, TargetOptions

__all__ = [
    "DEFAULT",
    "OptionError",
    "TARGETS",
    "Target",
    "TargetOptions",
    "find",
    "get",
    "names",
    "option_keys",
    "owners",
    "packages",
    "target_options",
]
