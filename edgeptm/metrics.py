"""Classification metrics, computed the same way for every runtime."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(predicted: Sequence[int], truth: Sequence[int]) -> float:
    p, t = np.asarray(predicted), np.asarray(truth)
    return float((p == t).mean()) if len(t) else 0.0


def macro_f1(predicted: Sequence[int], truth: Sequence[int], num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or predictions."""
    p, t = np.asarray(predicted), np.asarray(truth)
    scores = []
    for c in range(num_classes):
        tp = int(((p == c) & (t == c)).sum())
        fp = int(((p == c) & (t != c)).sum())
        fn = int(((p != c) & (t == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def classification_metrics(logits: np.ndarray, truth: Sequence[int], num_classes: int) -> dict[str, float]:
    predicted = logits.argmax(axis=-1)
    return {
        "accuracy": accuracy(predicted, truth),
        "macro_f1": macro_f1(predicted, truth, num_classes),
        "samples": len(truth),
    }


def evaluate_predictor(predictor, texts: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of a loaded artifact on labelled texts."""
    index = {name: i for i, name in enumerate(predictor.labels)}
    logits = predictor.check_outputs(predictor.logits(list(texts)))  # one score per label, or an error
    return classification_metrics(logits, [index[label] for label in labels], len(predictor.labels))


def output_agreement(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How closely one model's outputs follow another's on the same inputs (logits or vectors):
    max |difference|, mean and worst per-sample cosine similarity, and top-1 agreement."""
    a, b = expected.astype(np.float64), got.astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    cosine = (a * b).sum(-1) / norms
    return {
        "max_abs_diff": float(np.abs(a - b).max()) if a.size else 0.0,
        "mean_cosine": float(cosine.mean()) if len(cosine) else 1.0,
        "min_cosine": float(cosine.min()) if len(cosine) else 1.0,
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()) if len(a) else 1.0,
        "samples": int(len(a)),
    }
