"""ExecuTorch's version, imported lazily: what the build and the runtime check share."""

from __future__ import annotations

from edgeptm.errors import RuntimeUnavailable

INSTALL_HINT = "pip install executorch with a constraint that keeps your torch (e.g. -c constraints.txt)"


def import_executorch() -> str:
    """The installed ExecuTorch version, or RuntimeUnavailable naming what to install."""
    try:
        from executorch.version import __version__
    except ImportError as exc:
        raise RuntimeUnavailable(f"ExecuTorch is not available here ({exc}): {INSTALL_HINT}") from None
    return str(__version__)
