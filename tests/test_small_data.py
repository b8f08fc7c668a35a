"""Fine-tuning on little data: the best epoch is kept, a linear probe is the baseline, and the
validation split says what it can and cannot resolve (per class, with intervals, with a warning
when the model collapsed onto a few classes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import edgeptm
from edgeptm.finetuning import finetune
from edgeptm.metrics import collapse_warnings, confusion, detailed_metrics, per_class, wilson_interval

from conftest import tiny_options


def test_wilson_interval_is_honest_at_small_n():
    low, high = wilson_interval(43, 50)
    assert 0.73 < low < 0.74 and 0.93 < high < 0.94  # 0.86 on 50 samples: about +-7 points, as the issue says
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    wide, narrow = wilson_interval(40, 50), wilson_interval(800, 1000)
    assert wide[1] - wide[0] > 3 * (narrow[1] - narrow[0])


def test_collapse_warning_fires_on_a_collapsed_model_and_not_on_a_good_one():
    truth = [0] * 50 + [1] * 30 + [2] * 20
    collapsed = [1] * 90 + [0] * 10  # 90% of predictions on a class holding 30% of the labels
    found = collapse_warnings(collapsed, truth, ["a", "b", "c"])
    assert any("collapsed onto 'b'" in w for w in found) and any("never predicted: 'c'" in w for w in found)
    good = list(truth)
    good[:5] = [1] * 5
    assert collapse_warnings(good, truth, ["a", "b", "c"]) == []
    majority = [0] * 100  # the majority class holds 50%: no collapse by share, but two classes never predicted
    assert collapse_warnings(majority, truth, ["a", "b", "c"]) == [
        "never predicted: 'b', 'c' (present in the validation data)"
    ]


def test_per_class_figures_and_confusion():
    truth, predicted = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 1]
    table = per_class(predicted, truth, ["a", "b", "c"])
    assert table["b"] == {"precision": 0.5, "recall": 0.6667, "f1": 0.5714, "support": 3, "predicted": 4}
    assert table["c"]["predicted"] == 0 and table["c"]["f1"] == 0.0
    assert confusion(predicted, truth, 3) == [[1, 1, 0], [1, 2, 0], [0, 1, 0]]
    logits = np.eye(3)[predicted]
    scores = detailed_metrics(logits, truth, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(0.5) and scores["confusion"] == confusion(predicted, truth, 3)
    assert scores["accuracy_ci95"][0] < 0.5 < scores["accuracy_ci95"][1]


@pytest.fixture(scope="module")
def reviews_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The test reviews split into fixed train/validation files (validation large enough to move)."""
    from conftest import REVIEWS

    rows = list(csv.DictReader(open(REVIEWS, newline="")))
    root = tmp_path_factory.mktemp("reviews")
    for name, part in (("train.csv", rows[::2]), ("val.csv", rows[1::2])):
        with open(root / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in part)
    return root / "train.csv", root / "val.csv"


def _val_accuracy(path: Path, val: Path) -> float:
    rows = list(csv.DictReader(open(val, newline="")))
    with edgeptm.load(path) as predictor:
        predicted = [p.label for p in predictor.predict([r["text"] for r in rows])]
    return float(np.mean([p == r["label"] for p, r in zip(predicted, rows)]))


def test_the_best_epoch_is_kept_not_the_last(tiny_hf_dir: Path, reviews_split, tmp_path: Path):
    train, val = reviews_split
    opts = tiny_options(tiny_hf_dir, train=str(train), val=str(val), epochs=6, strategy="finetune")
    ckpt = finetune(opts, tmp_path / "ckpt")
    training = ckpt.manifest["training"]
    history, selection = training["history"], training["selection"]
    metric = selection["metric"]
    scores = [h[metric] for h in history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -history[i]["loss"]))
    assert selection["best_epoch"] == history[best]["epoch"] and selection["kept"] == "finetune"
    assert selection["best_epoch"] < len(history), "this seed's last epoch is not its best: the test needs that"
    assert f"epoch {selection['best_epoch']} of {len(history)}" in selection["why"]
    # The artifact holds that epoch's weights: served, it scores what that epoch scored.
    assert _val_accuracy(ckpt.path, val) == pytest.approx(history[best]["accuracy"])
    assert ckpt.metrics["accuracy"] == pytest.approx(history[best]["accuracy"])


def test_epochs_auto_stops_when_the_metric_stops_improving(tiny_hf_dir: Path, reviews_split, tmp_path: Path):
    train, val = reviews_split
    opts = tiny_options(tiny_hf_dir, train=str(train), val=str(val), epochs="auto", patience=1, max_epochs=12)
    selection = finetune(opts, tmp_path / "ckpt").manifest["training"]["selection"]
    assert selection["epochs_run"] == selection["best_epoch"] + 1 < 12
    assert selection["stopped_early"].startswith("no better")


def test_a_probe_is_an_ordinary_checkpoint(tiny_hf_dir: Path, reviews_split, tmp_path: Path):
    """--strategy probe: no fine-tuning; the pretrained body with the regression's head, which
    exports and serves like any checkpoint, and scores exactly what the probe scored."""
    train, val = reviews_split
    ckpt = finetune(tiny_options(tiny_hf_dir, train=str(train), val=str(val), strategy="probe"), tmp_path / "ckpt")
    training = ckpt.manifest["training"]
    assert training["selection"]["kept"] == "probe" and training["history"] == []
    assert ckpt.metrics["accuracy"] == pytest.approx(training["probe"]["accuracy"])
    onnx = edgeptm.export(ckpt, tmp_path / "onnx")
    assert _val_accuracy(onnx.path, val) == pytest.approx(training["probe"]["accuracy"])


def test_summary_says_what_the_split_resolves(tiny_checkpoint):
    from edgeptm.cli.finetune import summary_lines

    m = tiny_checkpoint.metrics
    assert set(m["per_class"]) == set(tiny_checkpoint.labels) and len(m["confusion"]) == len(tiny_checkpoint.labels)
    text = "\n".join(summary_lines(tiny_checkpoint))
    assert "95% interval" in text and "kept:" in text and "confusion" in text
    assert json.dumps(tiny_checkpoint.manifest["training"]["selection"])
