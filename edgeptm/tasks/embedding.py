"""Feature extraction: a text encoder used as-is for sentence embeddings (no labels, no head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import UsageError
from edgeptm.tasks.text import TextClassification


class FeatureExtraction(TextClassification):
    """Texts in, L2-normalised vectors out. Quality is agreement with the PyTorch vectors (cosine)."""

    name = "feature-extraction"

    def read_data(self, path: str | Path, opts: Any) -> Any:
        raise UsageError("feature-extraction models are used as-is: there is no labelled data to read")

    def recipe(self, *args: Any) -> Any:
        raise UsageError("a feature-extraction model is used as-is; to fine-tune, name the model for classification")

    def torch_model(self, artifact: Artifact, for_export: bool = False) -> Any:
        from edgeptm.models.embedder import load_embedder

        return load_embedder(artifact.path, artifact.manifest, attn_implementation="eager" if for_export else "sdpa")


FEATURE_EXTRACTION = FeatureExtraction()
