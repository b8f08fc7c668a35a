"""The small-data recipe with the real packaged pretrained models on small slices of real data
(slow: a few minutes). The data comes from the demos' fetches (cached); without a package index
or apt mirror the tests are skipped, saying so."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest

import edgeptm
from edgeptm.errors import DataError

pytestmark = pytest.mark.slow


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    return path


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Rotten Tomatoes: 100 + 100 training sentences, a skewed 180 + 20, and 400 for validation."""
    from edgeptm.data.demo import rotten_tomatoes
    from edgeptm.data.text import read_text_table

    try:
        split = rotten_tomatoes(fetch=True)
    except DataError as exc:
        pytest.skip(f"demo data unavailable (no package index?): {exc}")
    train, val = read_text_table(split.train), read_text_table(split.val)
    rows = list(zip(train.texts, train.labels))
    random.Random(0).shuffle(rows)
    fresh = [r for r in rows if r[1] == "fresh"]
    rotten = [r for r in rows if r[1] == "rotten"]
    root = tmp_path_factory.mktemp("rt-small")
    return {
        "balanced": _write(root / "balanced.csv", fresh[:100] + rotten[:100]),
        "skewed": _write(root / "skewed.csv", fresh[100:280] + rotten[100:120]),
        "val": _write(root / "val.csv", list(zip(val.texts, val.labels))[:400]),
    }


def _finetune(train: Path, val: Path, out: Path, **overrides) -> edgeptm.Artifact:
    values = dict(model="minilm-l6", train=str(train), val=str(val), max_length=64, progress=False, threads=2)
    return edgeptm.finetune(edgeptm.FinetuneOptions(**{**values, **overrides}), out)


def test_the_recipe_beats_the_probe_on_200_sentences(sentences, tmp_path: Path) -> None:
    ckpt = _finetune(sentences["balanced"], sentences["val"], tmp_path / "ckpt", epochs=3, strategy="finetune")
    training = ckpt.manifest["training"]
    selection, probe, history = training["selection"], training["probe"], training["history"]
    metric = selection["metric"]
    best = next(h for h in history if h["epoch"] == selection["best_epoch"])
    assert best[metric] == max(h[metric] for h in history)
    assert best["macro_f1"] >= probe["macro_f1"], (history, probe)
    assert ckpt.metrics["accuracy"] == pytest.approx(best["accuracy"]) and ckpt.metrics["warnings"] == []


def test_the_collapse_warning_fires_on_the_old_recipe_and_not_on_the_new(sentences, tmp_path: Path) -> None:
    """200 sentences, 10% rotten: the old recipe (random head, a flat 5e-5, batch 32, 2 epochs)
    predicts 'fresh' for everything, and is warned about; the defaults (macro-F1 selection on
    imbalanced labels, a balanced probe as the head's start) are not."""
    old = _finetune(
        sentences["skewed"],
        sentences["val"],
        tmp_path / "old",
        epochs=2,
        lr=5e-5,
        head_lr=5e-5,
        layer_decay=1.0,
        batch_size=32,
        head_init="random",
        strategy="finetune",
        select_metric="accuracy",
    )
    assert any("rotten" in w for w in old.metrics["warnings"]), old.metrics
    new = _finetune(sentences["skewed"], sentences["val"], tmp_path / "new", epochs=2)
    assert new.manifest["training"]["selection"]["metric"] == "macro_f1"
    assert new.metrics["warnings"] == [] and new.metrics["macro_f1"] > old.metrics["macro_f1"] + 0.2, new.metrics


@pytest.fixture(scope="module")
def garments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fashion-MNIST Trouser vs Bag: 75 + 75 training images, 200 + 200 for validation."""
    from edgeptm.data.vision_demo import fashion_mnist

    try:
        split = fashion_mnist(fetch=True)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST unavailable (no apt-get or no Debian mirror?): {exc}")
    root = tmp_path_factory.mktemp("garments")
    for part, source, count in (("train", split.train, 75), ("val", split.val, 200)):
        for cls in ("Trouser", "Bag"):
            files = sorted((Path(source) / cls).iterdir())
            random.Random(1).shuffle(files)
            (root / part / cls).mkdir(parents=True)
            for file in files[:count]:
                shutil.copy(file, root / part / cls / file.name)
    return {"train": root / "train", "val": root / "val"}


def test_150_images_three_epochs_reach_90_percent_and_keep_the_best(garments, tmp_path: Path) -> None:
    ckpt = edgeptm.finetune(
        edgeptm.FinetuneOptions(
            model="efficientnet-lite0",
            train=str(garments["train"]),
            val=str(garments["val"]),
            epochs=3,
            image_size=96,
            progress=False,
            threads=2,
        ),
        tmp_path / "ckpt",
    )
    training = ckpt.manifest["training"]
    history = training["history"]
    assert ckpt.metrics["accuracy"] >= 0.90, history
    assert ckpt.metrics["accuracy"] >= max(h["accuracy"] for h in history) - 1e-9  # the best is kept (or the probe)
    assert ckpt.metrics["accuracy"] >= training["probe"]["accuracy"] - 1e-9
    assert training["recipe"]["batchnorm_statistics"].startswith("pretrained")
