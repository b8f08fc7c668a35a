"""The linear probe: the baseline a fine-tune must beat on small data.

Logistic regression on the frozen pretrained features (what the new head sees: the pooled
sentence vector, the image model's penultimate features), scored on the same validation split as
the fine-tune. It takes seconds on a CPU, and with a few hundred examples it is sometimes the
better model: then the user is told, and ``--strategy auto`` keeps it. A probe is the pretrained
network with its head set to the regression's weights, so it is an ordinary checkpoint (same
export, quantize and compile path).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np

from edgeptm.metrics import log_loss

log = logging.getLogger(__name__)

MAX_PROBE_SAMPLES = 2000  # the probe's training rows at most (a seeded subset): seconds, not minutes
# L2 strengths tried on a seeded 80/20 split of the training rows (on standardised features);
# the one with the lowest held-out cross-entropy is refitted on all of them. Cross-entropy, not
# accuracy: the probe also initialises the head that fine-tuning starts from (LP-FT), and a head
# fitted with too little L2 on a few hundred separable rows is overconfident (held-out loss 3.1 at
# 0.63 accuracy on 200 sentences), which made the next epoch diverge.
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def features(recipe: Any, data: Any, idx: list[int] | None = None, batch_size: int = 64) -> np.ndarray:
    """The inputs of the recipe's head (``recipe.head``) for ``idx`` of ``data``, in eval mode."""
    import torch

    idx = list(range(len(data))) if idx is None else idx
    captured: list[Any] = []
    hook = recipe.head.register_forward_hook(lambda module, args, out: captured.append(args[0].detach().clone()))
    recipe.model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(idx), batch_size):
                recipe.model(*recipe.inputs(data, idx[start : start + batch_size]))
    finally:
        hook.remove()
    return torch.cat(captured).float().numpy() if captured else np.zeros((0, 0), dtype=np.float32)


def _fit(x: np.ndarray, y: np.ndarray, classes: int, l2: float, weights: np.ndarray | None) -> tuple[Any, Any]:
    """Multinomial logistic regression, L2 on the weights, by L-BFGS (full batch: tiny problem)."""
    import torch

    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    cw = None if weights is None else torch.from_numpy(weights).double()
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, weight=cw) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def fit_probe(
    train_x: np.ndarray, train_y: np.ndarray, classes: int, seed: int, class_weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Standardise, choose the L2 strength on a held-out fifth of the training rows, refit on all;
    returns the head's weight (classes x features) and bias in the original feature space."""
    # Centred, and scaled by one number for all features, not per feature: folding a per-feature
    # scale into the head divides by each feature's spread, so near-constant features get huge
    # weights, which amplify the rounding of an INT8 graph (MiniLM on 640 sentences: dynamic INT8
    # lost 3.7 points with per-feature scales, within the test's 3-point guard with one scale).
    mean = train_x.mean(0)
    std = np.full(train_x.shape[1], float(train_x.std()) + 1e-6)
    z = (train_x - mean) / std
    order = list(range(len(z)))
    random.Random(seed + 3).shuffle(order)
    cut = len(order) // 5
    chosen, scores = L2_GRID[1], {}
    if cut >= classes and len(set(train_y[order[cut:]].tolist())) == classes:
        held, fit = order[:cut], order[cut:]
        for l2 in L2_GRID:
            w, b = _fit(z[fit], train_y[fit], classes, l2, class_weights)
            scores[l2] = log_loss(z[held] @ w + b, train_y[held])
        chosen = min(scores, key=lambda l2: (scores[l2], -l2))  # ties: the stronger regularisation
    w, b = _fit(z, train_y, classes, chosen, class_weights)
    weight = (w / std[:, None]).T  # fold the standardisation into the head
    bias = b - (mean / std) @ w
    return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32), "l2": chosen, "holdout": scores}


def train_probe(recipe: Any, labels: list[str], seed: int, class_weights: np.ndarray | None) -> dict[str, Any]:
    """Fit the probe on (a seeded subset of) the training rows; its validation logits come along."""
    index = {name: i for i, name in enumerate(labels)}
    rows = list(range(len(recipe.train)))
    if len(rows) > MAX_PROBE_SAMPLES:
        random.Random(seed + 5).shuffle(rows)
        rows = sorted(rows[:MAX_PROBE_SAMPLES])
    train_x = features(recipe, recipe.train, rows)
    train_y = np.array([index[recipe.train.labels[i]] for i in rows])
    probe = fit_probe(train_x, train_y, len(labels), seed, class_weights)
    val_x = features(recipe, recipe.val)
    probe["val_logits"] = val_x @ probe["weight"].T + probe["bias"]
    probe["train_samples"] = len(rows)
    return probe


def install(recipe: Any, probe: dict[str, Any]) -> None:
    """Make the recipe's model the probe: the head takes the regression's weights."""
    import torch

    with torch.no_grad():
        recipe.head.weight.copy_(torch.from_numpy(probe["weight"]))
        recipe.head.bias.copy_(torch.from_numpy(probe["bias"]))
