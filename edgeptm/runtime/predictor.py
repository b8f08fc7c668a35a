"""Predictor: the artifact's preprocessing, a backend, and the postprocessing, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.runtime.base import Backend
from edgeptm.runtime.tokenizer import load_text_tokenizer


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


class TextPredictor:
    """Tokenize -> run -> softmax for a text-classification artifact."""

    def __init__(self, artifact: Artifact, backend: Backend, batch_size: int = 32) -> None:
        self.artifact = artifact
        self.backend = backend
        self.labels = artifact.labels
        self.max_length = int(artifact.preprocessing["max_length"])
        self.tokenizer = load_text_tokenizer(artifact.path / artifact.preprocessing["tokenizer"])
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], seq_len: int | None = None) -> dict[str, np.ndarray]:
        """Token arrays for ``texts``: padded to the longest (or to exactly ``seq_len``)."""
        encoded = self.tokenizer(texts, max_length=seq_len or self.max_length, pad_to=seq_len)
        return {name: encoded[name] for name in self.backend.input_names}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            feed = self.encode(texts[start : start + self.batch_size])
            chunks.append(next(iter(self.backend.run(feed).values())))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str):
            texts = [texts]
        probs = softmax(self.logits(list(texts)).astype(np.float64))
        best = probs.argmax(axis=-1)
        return [Prediction(self.labels[i], float(p[i])) for i, p in zip(best, probs)]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "TextPredictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
