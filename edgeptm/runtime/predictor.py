"""Predictor: the artifact's preprocessing, a backend, and the postprocessing, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import ArtifactError
from edgeptm.runtime.base import Backend
from edgeptm.runtime.preprocess import preprocessor_for


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def encode_within(preprocessor: Any, inputs: Sequence[Any], bounds: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """Encode texts to a length within an engine's (min, max) sequence bounds."""
    if not bounds:
        return preprocessor.encode(inputs)
    low, high = bounds
    feed = preprocessor.encode(inputs, None, limit=high)
    length = next(iter(feed.values())).shape[1]
    return preprocessor.encode(inputs, low) if length < low else feed


class Predictor:
    """Preprocess -> run -> softmax for a classification artifact (texts or images)."""

    def __init__(self, artifact: Artifact, backend: Backend, batch_size: int = 32) -> None:
        self.artifact = artifact
        self.backend = backend
        self.labels = artifact.labels
        self.preprocessor = preprocessor_for(artifact)
        # An engine compiled for at most N samples per call (its shape ranges) bounds it.
        self.batch_size = min(batch_size, getattr(backend, "max_batch", None) or batch_size)

    def encode(self, inputs: Sequence[Any], seq_len: int | None = None) -> dict[str, np.ndarray]:
        """The backend feed for ``inputs`` (token arrays, or a normalised NCHW image batch).

        An engine built for sequences of min..max tokens gets texts cut to max and padded to at
        least min (padding is masked, so the logits do not change)."""
        if seq_len is not None:
            return self.preprocessor.encode(inputs, seq_len)
        return encode_within(self.preprocessor, inputs, getattr(self.backend, "sequence_bounds", None))

    def logits(self, inputs: Sequence[Any]) -> np.ndarray:
        chunks = []
        for start in range(0, len(inputs), self.batch_size):
            feed = self.encode(inputs[start : start + self.batch_size])
            chunks.append(next(iter(self.backend.run(feed).values())).astype(np.float32, copy=False))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs.astype(np.float64))

    def probabilities(self, inputs: Sequence[Any]) -> np.ndarray:
        return self.postprocess(self.logits(_as_list(inputs)))

    def check_outputs(self, probs: np.ndarray) -> np.ndarray:
        """A manifest's labels name the model's outputs one to one: refuse a list of another length
        (it would name the wrong classes, or none)."""
        if probs.ndim != 2 or probs.shape[-1] != len(self.labels):
            scores = probs.shape[-1] if probs.ndim else 0
            raise ArtifactError(
                f"{self.artifact.path}: the manifest lists {len(self.labels)} labels but the model outputs "
                f"{scores} scores per input; the artifact is inconsistent: rebuild it"
            )
        return probs

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        """The best label and its probability for each input."""
        probs = self.check_outputs(self.probabilities(inputs))
        best = probs.argmax(axis=-1)
        return [Prediction(self.labels[i], float(p[i])) for i, p in zip(best, probs)]

    def top_k(self, inputs: Sequence[Any], k: int = 5) -> list[list[Prediction]]:
        """The ``k`` most probable labels for each input, best first."""
        probs = self.check_outputs(self.probabilities(inputs))
        order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        return [[Prediction(self.labels[i], float(p[i])) for i in row] for row, p in zip(order, probs)]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_list(inputs: Any) -> list[Any]:
    from pathlib import Path

    return [inputs] if isinstance(inputs, (str, Path)) else list(inputs)


class EmbeddingPredictor(Predictor):
    """Tokenize -> run -> sentence vectors (L2-normalised when the model says so)."""

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, float32, shape (n, hidden)."""
        return self.logits(_as_list(texts))

    def similarity(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity between every pair of ``texts``."""
        vectors = self.embed(texts).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return vectors @ vectors.T

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        raise TypeError("a feature-extraction model has no labels: use embed() or similarity()")

    def top_k(self, inputs: Sequence[Any], k: int = 5) -> list[list[Prediction]]:
        raise TypeError("a feature-extraction model has no labels: use embed() or similarity()")


PREDICTORS = {"feature-extraction": EmbeddingPredictor}


def predictor_for(artifact: Artifact, backend: Backend) -> Predictor:
    return PREDICTORS.get(artifact.task, Predictor)(artifact, backend)


TextPredictor = Predictor  # the name before images arrived
