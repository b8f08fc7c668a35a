"""quantize --fallback auto on the demos' models: accuracy on held-out data, and latency side by side.

The FP32 export's validation split is cut in two (seeded): the fallback searches on one half
(``--val``), and every variant is scored on the other half, which no search saw. Then all variants
are timed in one bench run (each in its own process, interleaved rounds, batch 1, 2 threads).

Variants (quantize's own commands; built once, reused when present under ``--work``):
- text (the demo's fine-tuned MiniLM): static QDQ on MatMul only (the family's recipe), static QDQ on
  every op type, the same with ``--fallback auto``, and dynamic INT8 (text's default);
- vision (EfficientNet-Lite0): static QDQ on every op type (the family's recipe) and the same with
  ``--fallback auto``.

    .venv/bin/python benchmarks/fallback.py --model text --root runs/demo --budget 1.0 --json out.json
    .venv/bin/python benchmarks/fallback.py --model vision --root runs/demo-vision224 --budget 1.5
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgeptm
from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.environment import describe_lines
from edgeptm.metrics import classification_metrics
from edgeptm.tasks import get_task


def split_validation(onnx: Path, work: Path) -> tuple[str, Any]:
    """The carried validation split, halved (seeded): the search half written for --val, the other
    half returned."""
    artifact = edgeptm.open_artifact(onnx)
    data = get_task(artifact.task).val_data(artifact)
    order = list(range(len(data)))
    random.Random(0).shuffle(order)
    half = len(order) // 2
    search, held = data.subset(sorted(order[:half])), data.subset(sorted(order[half:]))
    path = work / "search-val.jsonl"
    search.to_jsonl(path)
    return str(path), held


def recipes(model: str, budget: float) -> dict[str, list[str]]:
    common = ["--mode", "static-int8"]
    fallback = ["--fallback", "auto", "--max-accuracy-drop", f"{budget:g}"]
    if model == "text":
        return {
            "static QDQ, MatMul only (family recipe)": common,
            "static QDQ, every op type": [*common, "--op-types", "all"],
            "static QDQ, every op type, fallback auto": [*common, "--op-types", "all", *fallback],
            "dynamic INT8 (text default)": ["--mode", "dynamic-int8"],
        }
    return {
        "static QDQ, every op type (family recipe)": common,
        "static QDQ, every op type, fallback auto": [*common, "--op-types", "all", *fallback],
    }


def build(onnx: Path, work: Path, val: str, name: str, flags: list[str]) -> tuple[Path, float]:
    out = work / name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
    if (out / "manifest.json").is_file():
        return out, float("nan")
    started = time.perf_counter()
    command = [sys.executable, "-m", "edgeptm", "quantize", str(onnx), *flags, "--val", val, "--out", str(out)]
    subprocess.run(command, check=True)
    return out, time.perf_counter() - started


def held_out(path: Path, data: Any) -> dict[str, Any]:
    artifact = edgeptm.open_artifact(path)
    index = {name: i for i, name in enumerate(artifact.labels)}
    with edgeptm.load(path) as predictor:
        logits = np.asarray(predictor.logits(data.inputs))
    truth = np.array([index[label] for label in data.labels])
    found = classification_metrics(logits, list(truth), len(index))
    predicted = logits.argmax(-1)
    per_class = {}
    for name, i in index.items():
        tp = int(((predicted == i) & (truth == i)).sum())
        precision = tp / max(int((predicted == i).sum()), 1)
        recall = tp / max(int((truth == i).sum()), 1)
        per_class[name] = round(2 * precision * recall / (precision + recall), 4) if tp else 0.0
    return {**found, "per_class": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["text", "vision"], required=True)
    parser.add_argument("--root", required=True, help="the demo's --out: holds onnx-fp32/")
    parser.add_argument("--work", default=None, help="where the variants go [default: ROOT/fallback]")
    parser.add_argument("--budget", type=float, default=1.0, help="--max-accuracy-drop, points")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds timed per variant")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    root = Path(args.root)
    onnx = root / "onnx-fp32"
    work = Path(args.work or root / "fallback")
    work.mkdir(parents=True, exist_ok=True)
    val, held = split_validation(onnx, work)
    rows: list[dict[str, Any]] = [{"variant": "ONNX Runtime FP32", "path": onnx, "build_s": None}]
    for name, flags in recipes(args.model, args.budget).items():
        path, seconds = build(onnx, work, val, name, flags)
        rows.append({"variant": name, "path": path, "build_s": seconds})
    for row in rows:
        metrics = held_out(row["path"], held)
        row.update(held_out_accuracy=metrics["accuracy"], held_out_macro_f1=metrics["macro_f1"])
        row["per_class_f1"] = metrics.get("per_class")
        manifest = edgeptm.open_artifact(row["path"]).manifest
        fallback = (manifest.get("quantization") or {}).get("fallback")
        row["search_accuracy"] = (manifest.get("metrics") or {}).get("accuracy")
        row["search_parent"] = (manifest.get("metrics") or {}).get("parent_accuracy")
        if fallback:
            row["fallback"] = {k: fallback[k] for k in ("float_node_types", "eligible_nodes", "builds", "seconds")}
            row["fallback"]["float_nodes"] = len(fallback["float_nodes"])
            row["fallback"]["latency_ms"] = fallback["latency_ms"]
    # the FP32 export's own manifest scores the whole split: its search-half figure is the parent
    # accuracy every quantized variant recorded against that half
    parents = [r["search_parent"] for r in rows[1:] if r.get("search_parent") is not None]
    rows[0]["search_accuracy"] = parents[0] if parents else None
    artifact = edgeptm.open_artifact(onnx)
    seq_len = int(artifact.preprocessing["max_length"]) if artifact.view.text else None
    report = bench(
        [r["path"] for r in rows],
        BenchOptions(threads=2, rounds=args.rounds, duration=args.duration, seq_len=seq_len),
    )
    timed = {str(Path(r["artifact"]).resolve()): r for r in report["results"]}
    for row in rows:
        r = timed[str(Path(row["path"]).resolve())]
        row.update(p50_ms=r.get("p50_ms"), p90_ms=r.get("p90_ms"), size_mb=r.get("size_mb"))
    fp32 = rows[0]
    print("\n".join(describe_lines(report["environment"])))
    print(
        f"\nheld-out half of the validation split: {len(held)} samples; search half: {len(held)} or so; "
        f"budget {args.budget:g} points; batch 1, 2 threads" + (f", sequence {seq_len}" if seq_len else "")
    )
    print(
        "\n| variant | held-out accuracy | vs FP32 (pt) | macro-F1 | search-half accuracy | p50 ms | p90 ms "
        "| p50 / FP32 | size MB |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        delta = (row["held_out_accuracy"] - fp32["held_out_accuracy"]) * 100
        search = "" if row["search_accuracy"] is None else f"{row['search_accuracy']:.4f}"
        print(
            f"| {row['variant']} | {row['held_out_accuracy']:.4f} | {delta:+.2f} | {row['held_out_macro_f1']:.4f} "
            f"| {search} | {row['p50_ms']:.3f} | {row['p90_ms']:.3f} | {row['p50_ms'] / fp32['p50_ms']:.3f} "
            f"| {row['size_mb']:.2f} |"
        )
    print("\nper-class F1 on the held-out half:")
    for row in rows:
        print(f"- {row['variant']}: " + ", ".join(f"{k} {v:.3f}" for k, v in row["per_class_f1"].items()))
    for row in rows:
        if row.get("fallback"):
            print(f"\n{row['variant']}: {json.dumps(row['fallback'])}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "bench": report}, indent=2, default=str, ensure_ascii=False) + "\n"
        )


if __name__ == "__main__":
    main()
