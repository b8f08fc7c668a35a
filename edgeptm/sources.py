"""Where a stage's (or ``load()``'s) source comes from: an artifact directory, or the name of a
registered model (``minilm-l6``), materialised once into the cache as a checkpoint artifact and
opened from there. ``artifacts.open_artifact`` opens directories only: it knows no model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from edgeptm.artifacts import Artifact, check_not_source, check_out_dir, open_artifact
from edgeptm.errors import UsageError


def open_source(source: str | os.PathLike[str] | Artifact) -> Artifact:
    """An artifact as given, a directory opened (and verified), or a registered model's checkpoint."""
    if isinstance(source, Artifact):
        return source
    if not Path(source).exists():
        from edgeptm.models.pretrained import names_a_model, pretrained_artifact

        if names_a_model(str(source)):  # a registered model used as-is: materialised once, then cached
            return pretrained_artifact(str(source))
    return open_artifact(source)


def open_stage_source(
    source: str | os.PathLike[str] | Artifact,
    out: Path,
    force: bool,
    stage: str,
    accepts: str,
    ok: Callable[[Artifact], bool] | None = None,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Artifact:
    """The common start of a stage: check --out, open and verify the source, check it fits the stage.

    ``ok`` is a predicate over the opened artifact (default: any); ``accepts`` says in words what fits.
    ``inputs``: the stage's other inputs (--calib, --val, a profile file), which --out may not touch.
    """
    inputs = list(inputs)
    if not isinstance(source, Artifact) and Path(source).exists():  # not a registered model's name
        inputs.append(source)
    check_out_dir(out, force, inputs)
    artifact = open_source(source)
    if ok is not None and not ok(artifact):
        raise UsageError(
            f"{artifact.path}: {stage} takes {accepts}, this one is '{artifact.kind}' "
            f"({artifact.manifest.get('precision')})"
        )
    check_not_source(out, artifact)
    return artifact
