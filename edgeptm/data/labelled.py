"""What every labelled dataset shares, whatever its inputs are (texts, image paths)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from edgeptm.errors import DataError


class Labelled:
    """Mixin for a dataclass with one list of inputs (named by ``INPUTS``), ``labels`` and ``source``."""

    INPUTS = "inputs"
    NOUN = "inputs"
    labels: list[str]
    source: str

    @property
    def inputs(self) -> list[Any]:
        """The raw inputs, as a Predictor takes them."""
        return getattr(self, self.INPUTS)

    def __len__(self) -> int:
        return len(self.inputs)

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise DataError(f"{self.source}: {len(self.inputs)} {self.NOUN} but {len(self.labels)} labels")

    def label_set(self) -> list[str]:
        return sorted(set(self.labels))

    def subset(self, indices: Iterable[int]) -> Any:
        idx = list(indices)
        picked = {self.INPUTS: [self.inputs[i] for i in idx], "labels": [self.labels[i] for i in idx]}
        return dataclasses.replace(self, **picked)  # type: ignore[type-var]

    def check_labels(self, known: list[str]) -> None:
        unknown = sorted(set(self.labels) - set(known))
        if unknown:
            raise DataError(
                f"{self.source}: label '{unknown[0]}' never appears in the training data "
                f"(training labels: {', '.join(known)})"
            )
