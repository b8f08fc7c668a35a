"""Tasks: what differs between text and image models in every stage, behind one small interface.

A stage (finetune, export, quantize, bench, predict) is written once; it asks the artifact's task
for the parts that depend on the kind of input: how to read labelled data, how to batch it for
training, which torch module an artifact rebuilds, what an example input for export looks like,
and which Predictor turns raw inputs (texts, image files) into model feeds. Adding a task is one
module here and one line in ``TASKS``.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeptm.errors import UsageError

TASKS: dict[str, str] = {
    "text-classification": "edgeptm.tasks.text:TEXT_CLASSIFICATION",
    "image-classification": "edgeptm.tasks.image:IMAGE_CLASSIFICATION",
    "feature-extraction": "edgeptm.tasks.embedding:FEATURE_EXTRACTION",
}


def get_task(name: str) -> Any:
    """The task object for a manifest's or a model spec's ``task``."""
    try:
        module_name, attr = TASKS[name].split(":")
    except KeyError:
        raise UsageError(f"task '{name}' is not supported by this edgeptm (known: {', '.join(TASKS)})") from None
    return getattr(importlib.import_module(module_name), attr)


__all__ = ["TASKS", "get_task"]
