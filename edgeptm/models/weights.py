"""Loading a checkpoint artifact's own weights into a freshly built module (safetensors only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeptm.errors import ModelError


def load_artifact_weights(model: Any, checkpoint_dir: Path, manifest: dict[str, Any]) -> Any:
    """Fill ``model`` with the checkpoint's weights, every tensor accounted for; returns it in eval mode."""
    from safetensors.torch import load_file

    state = load_file(os.fspath(checkpoint_dir / manifest["files"]["weights"]["path"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{checkpoint_dir}: weights do not fit the architecture "
            f"(missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'})"
        )
    return model.eval()
