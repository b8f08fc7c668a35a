"""OpenVINO, imported lazily: what the build, the backend and the runtime check share."""

from __future__ import annotations

from typing import Any

from edgeptm.errors import RuntimeUnavailable

INSTALL_HINT = "pip install openvino nncf (edgeptm installs both)"


def import_openvino() -> Any:
    """The ``openvino`` module, or RuntimeUnavailable naming what to install."""
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable(f"OpenVINO is not available here ({exc}): {INSTALL_HINT}") from None
    return openvino


def openvino_version() -> str:
    """``2026.4.1`` (the build suffix dropped)."""
    ov = import_openvino()
    return ov.get_version().split("-")[0]


def error_line(exc: BaseException) -> str:
    """OpenVINO's (generic, multi-line) error as one line for a message."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
