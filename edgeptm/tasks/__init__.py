"""Tasks: what differs between text and image models in every stage, behind one small interface.

A stage (finetune, export, quantize, bench, predict) is written once; it asks the artifact's task
for the parts that depend on the kind of input: how to read labelled data, how to batch it for
training, which torch module an artifact rebuilds, what an example input for export looks like,
and which Predictor turns raw inputs (texts, image files) into model feeds. Adding a task is one
module here and one line in ``TASKS``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from edgeptm.errors import DataError, UsageError

log = logging.getLogger(__name__)

TASKS: dict[str, str] = {
    "text-classification": "edgeptm.tasks.text:TEXT_CLASSIFICATION",
    "image-classification": "edgeptm.tasks.image:IMAGE_CLASSIFICATION",
    "feature-extraction": "edgeptm.tasks.embedding:FEATURE_EXTRACTION",
    "text-generation": "edgeptm.tasks.generation:TEXT_GENERATION",
}


def get_task(name: str) -> Any:
    """The task object for a manifest's or a model spec's ``task``."""
    try:
        module_name, attr = TASKS[name].split(":")
    except KeyError:
        raise UsageError(f"task '{name}' is not supported by this edgeptm (known: {', '.join(TASKS)})") from None
    return getattr(importlib.import_module(module_name), attr)


def carried_val_data(task: Any, artifact: Any) -> Any:
    """The validation split the artifact carries, or None (with a warning) when its files are not
    on this machine: the stage then validates numerically on stand-in inputs only."""
    if not artifact.has_file("val_data"):
        return None
    try:
        return task.val_data(artifact)
    except DataError as exc:
        log.warning("%s; accuracy is not measured", exc)
        return None


def draw_calibration(artifact: Any, limit: int, path: str | None = None) -> tuple[list[Any], str]:
    """Up to ``limit`` calibration inputs and where they came from, for every calibrated stage
    (quantize's static INT8, the compilers' INT8): from ``path`` (images: a folder or a path,label list;
    text: a file with a 'text' column) when given, else the training sample the artifact carries.
    A seeded draw: the same count gives the same inputs on every run and for every runtime. An
    empty list when there is none (each stage says what to do then)."""
    import random

    if limit < 1:
        raise UsageError(f"--calib-samples must be >= 1, got {limit}")
    task = get_task(artifact.task)
    if path:
        inputs, source = list(task.read_calibration(path)), f"--calib {path}"
        if not inputs:
            raise DataError(f"--calib {path}: no usable calibration inputs in it")
    else:
        inputs, source = list(task.calibration_inputs(artifact) or []), "training sample carried by the artifact"
    if len(inputs) > limit:
        inputs = sorted(random.Random(0).sample(inputs, limit))
    return inputs, f"{source} ({len(inputs)} inputs)"


__all__ = ["TASKS", "carried_val_data", "draw_calibration", "get_task"]
