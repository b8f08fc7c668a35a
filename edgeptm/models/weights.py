"""Loading a checkpoint artifact's own weights into a freshly built module (safetensors only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeptm.errors import ModelError


def load_artifact_weights(model: Any, checkpoint_dir: Path, manifest: dict[str, Any]) -> Any:
    """Fill ``model`` with the checkpoint's weights, every tensor accounted for; returns it in eval mode."""
    from safetensors.torch import load_file

    path = checkpoint_dir / manifest["files"]["weights"]["path"]
    try:
        state = load_file(os.fspath(path))
    # safetensors raises its own SafetensorError (a bare Exception subclass) on junk, a pickle or a
    # truncated file; OSError when unreadable. Nothing here unpickles.
    except Exception as exc:
        raise ModelError(f"{path}: not a readable safetensors weights file ({_one_line(exc)})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise ModelError(f"{checkpoint_dir}: weights do not fit the architecture ({_one_line(exc)})") from None
    if missing or unexpected:
        raise ModelError(
            f"{checkpoint_dir}: weights do not fit the architecture "
            f"(missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'})"
        )
    return model.eval()


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (torch's list several mismatches over several lines)."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]
