"""Runtimes: one Backend protocol, one module per runtime, and ``load()`` for applications.

predictor = edgeptm.load("runs/minilm-int8")
predictor.predict(["a gripping, beautifully shot film"])
# [Prediction(label='fresh', score=0.97)]

generator = edgeptm.load("runs/smollm2-int4")   # a causal LM: a Generator
generator.generate("Write a haiku about rain").text
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.sources import open_source
from edgeptm.errors import BackendError
from edgeptm.runtime.base import Backend, default_backend, open_backend
from edgeptm.runtime.predictor import EmbeddingPredictor, Prediction, Predictor, TextPredictor, predictor_for


def load(
    path: str | Path | Artifact,
    backend: str | None = None,
    threads: int | None = None,
    provider: str | None = None,
    digest: str | None = None,
) -> Predictor | Any:
    """Open an artifact (manifest checked, checksums verified) on its runtime, with its
    preprocessing attached. ``provider``: ONNX Runtime's execution provider (cpu, cuda, or another it has)
    for ONNX artifacts. ``digest`` ('sha256:...', as 'edgeptm verify' prints): load only that
    artifact, and trust its native code (compiled engines that hold some) without 'edgeptm trust'."""
    artifact = open_source(path)  # a directory, or a registered model used as-is
    if artifact.task == "text-generation":  # a Generator: generate(), stream(), perplexity()
        from edgeptm.runtime.generator import open_generator

        if artifact.kind == "checkpoint":
            if digest is not None:  # a pinned checkpoint: refused unless it is exactly that one
                from edgeptm import trust

                trust.pin(artifact, digest)
            return open_generator(artifact, None, threads)
        return open_generator(artifact, open_backend(artifact, backend, threads, provider, digest), threads)
    from edgeptm.runtime.preprocess import PREPROCESSORS

    if artifact.task not in PREPROCESSORS:
        raise BackendError(f"{artifact.path}: task '{artifact.task}' has no predictor in this edgeptm")
    return predictor_for(artifact, open_backend(artifact, backend, threads, provider, digest))


__all__ = [
    "Backend",
    "EmbeddingPredictor",
    "Prediction",
    "Predictor",
    "TextPredictor",
    "default_backend",
    "load",
    "open_backend",
]
