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


def log_loss(logits: np.ndarray, truth: Sequence[int]) -> float:
    """Mean cross-entropy of ``truth`` under softmax(``logits``), computed stably."""
    if not len(truth):
        return 0.0
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(truth)), np.asarray(truth)].mean())


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


def per_class(predicted: Sequence[int], truth: Sequence[int], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every label (a label never predicted has precision 0)."""
    p, t = np.asarray(predicted), np.asarray(truth)
    table = {}
    for c, name in enumerate(labels):
        tp = int(((p == c) & (t == c)).sum())
        predicted_c, support = int((p == c).sum()), int((t == c).sum())
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
            "predicted": predicted_c,
        }
    return table


def confusion(predicted: Sequence[int], truth: Sequence[int], num_classes: int) -> list[list[int]]:
    """Rows: true label; columns: predicted label."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix.tolist()


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small n and near 0 or 1, where the
    normal approximation gives intervals past [0, 1]."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


# A model "collapsed" when one label takes most predictions without holding most of the labels, or
# when a label that occurs is never predicted: the accuracy of such a model flatters it.
COLLAPSE_SHARE, COLLAPSE_TRUE_SHARE = 0.8, 0.5


def collapse_warnings(predicted: Sequence[int], truth: Sequence[int], labels: Sequence[str]) -> list[str]:
    p, t = np.asarray(predicted), np.asarray(truth)
    if not len(t):
        return []
    found = []
    for c, name in enumerate(labels):
        share, true_share = float((p == c).mean()), float((t == c).mean())
        if share > COLLAPSE_SHARE and true_share < COLLAPSE_TRUE_SHARE:
            found.append(
                f"predictions collapsed onto '{name}': {share:.0%} of predictions for {true_share:.0%} of the labels"
            )
    never = [name for c, name in enumerate(labels) if (t == c).any() and not (p == c).any()]
    if never:
        found.append(f"never predicted: {', '.join(repr(n) for n in never)} (present in the validation data)")
    return found


def detailed_metrics(logits: np.ndarray, truth: Sequence[int], labels: Sequence[str]) -> dict[str, object]:
    """Everything a small validation split can honestly say: accuracy with its 95% interval,
    macro-F1, per-class figures, the confusion matrix, and collapse warnings."""
    predicted = logits.argmax(axis=-1)
    t = np.asarray(truth)
    correct = int((predicted == t).sum())
    low, high = wilson_interval(correct, len(t))
    return {
        "accuracy": accuracy(predicted, truth),
        "accuracy_ci95": [round(low, 4), round(high, 4)],
        "macro_f1": macro_f1(predicted, truth, len(labels)),
        "samples": len(t),
        "per_class": per_class(predicted, truth, labels),
        "confusion": confusion(predicted, truth, len(labels)),
        "warnings": collapse_warnings(predicted, truth, labels),
    }
