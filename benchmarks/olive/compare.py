"""Olive's results beside `edgeptm optimize`'s pick, timed by edgeptm's harness in one run.

Runs in the project's venv, after `run_olive.py` (Olive's venv) and `edgeptm optimize`. Each model
Olive wrote (`out/<name>/<run>/model.onnx`) is wrapped as an edgeptm ONNX artifact: a copy of the
FP32 artifact Olive was given, with Olive's graph as `model.onnx`, no ONNX Runtime fused graph and no
session hint (Olive's graph runs in a plain ONNX Runtime session, as Olive's own evaluator runs it;
its tuned session options are ORT_ENABLE_ALL or EXTENDED, sequential, 2 intra-op threads: the
harness uses ORT_ENABLE_ALL, sequential, 2 threads). Then:

- accuracy of every variant on the validation split the FP32 artifact carries, through
  `edgeptm.load(...).logits` (the same batches and preprocessing for all);
- one `edgeptm bench` run: every variant in its own process, interleaved rounds, batch 1, 2 threads,
  the sequence the model serves (text);
- wall time: Olive's runs from their summaries, edgeptm's from the optimize report.

    .venv/bin/python benchmarks/olive/compare.py --name minilm --fp32 runs/demo/onnx-fp32 \
        --optimize runs/opt-minilm [--rounds 13] [--duration 6] [--json F]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import edgeptm
from edgeptm.artifacts import sha256_file
from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.environment import describe_lines
from edgeptm.metrics import classification_metrics
from edgeptm.tasks import get_task

HERE = Path(__file__).resolve().parent
RUNS = ("optimize", "auto-opt", "search")


def wrap(fp32: Path, model: Path, out: Path, label: str) -> Path:
    """``fp32``'s artifact with ``model`` as its graph (resealed), for the harness to load."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(fp32, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for role in [r for r in manifest["files"] if r == "ort-model"]:
        (out / manifest["files"][role]["path"]).unlink(missing_ok=True)
        manifest["files"].pop(role)
    manifest.pop("derived", None)
    manifest["runtime"] = None
    shutil.copyfile(model, out / "model.onnx")
    external = model.with_name(model.name + ".data")
    if external.is_file():
        shutil.copyfile(external, out / external.name)
        manifest["files"]["model-data"] = {
            "path": external.name, "sha256": sha256_file(out / external.name), "size": external.stat().st_size
        }  # fmt: skip
    manifest["files"]["model"].update(sha256=sha256_file(out / "model.onnx"), size=(out / "model.onnx").stat().st_size)
    manifest["precision"] = f"olive {label}"
    manifest["metrics"] = {}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def accuracy(path: Path, data: Any) -> dict[str, Any]:
    artifact = edgeptm.open_artifact(path)
    index = {name: i for i, name in enumerate(artifact.labels)}
    with edgeptm.load(path) as predictor:
        logits = np.asarray(predictor.logits(data.inputs))
    return classification_metrics(logits, [index[label] for label in data.labels], len(index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the run_olive.py --name (minilm, lite0)")
    parser.add_argument("--fp32", required=True, help="the FP32 ONNX artifact Olive was given")
    parser.add_argument("--optimize", required=True, help="the --out of 'edgeptm optimize'")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    fp32 = Path(args.fp32)
    report = json.loads((Path(args.optimize) / "optimize-report.json").read_text())
    rows: list[dict[str, Any]] = [
        {"variant": "FP32 (the artifact both were given)", "path": fp32, "wall_s": None},
        {
            "variant": f"edgeptm optimize: {report['chosen_recipe']}",
            "path": Path(report["chosen"]),
            "wall_s": report["seconds"],
        },
    ]
    work = HERE / "out" / args.name / "wrapped"
    for run in RUNS:
        summary_path = HERE / "out" / f"{args.name}-{run}.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        if summary.get("rc") != 0 or not summary.get("output_model"):
            rows.append({"variant": f"Olive {run}", "path": None, "wall_s": summary.get("wall_s"),
                         "error": summary.get("error")})  # fmt: skip
            continue
        model = HERE.parent.parent / summary["output_model"]
        passes = " -> ".join(p.get("pass", "?") for p in summary.get("pass_chain") or [])
        rows.append({
            "variant": f"Olive {run}" + (f" ({passes})" if passes else ""),
            "path": wrap(fp32, model, work / run, run),
            "wall_s": summary["wall_s"] + (summary.get("cli_dry_run_wall_s") or 0),
            "olive_metrics": summary.get("metrics"),
        })  # fmt: skip
    artifact = edgeptm.open_artifact(fp32)
    data = get_task(artifact.task).val_data(artifact)
    for row in rows:
        if row["path"] is not None:
            row.update(accuracy(row["path"], data))
    timed_rows = [r for r in rows if r["path"] is not None]
    seq_len = int(artifact.preprocessing["max_length"]) if artifact.view.text else None
    result = bench(
        [r["path"] for r in timed_rows],
        BenchOptions(threads=2, rounds=args.rounds, duration=args.duration, seq_len=seq_len),
    )
    by_path = {str(Path(r["artifact"]).resolve()): r for r in result["results"]}
    for row in timed_rows:
        r = by_path[str(Path(row["path"]).resolve())]
        row.update(p50_ms=r.get("p50_ms"), p90_ms=r.get("p90_ms"), size_mb=r.get("size_mb"), status=r.get("status"))
    print("\n".join(describe_lines(result["environment"])))
    print(f"\n{len(data)} validation samples; batch 1, 2 threads" + (f", sequence {seq_len}" if seq_len else ""))
    best = rows[1].get("p50_ms")
    print("\n| variant | accuracy | macro-F1 | p50 ms | p90 ms | p50 / edgeptm's | size MB | wall s |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        if row["path"] is None:
            print(f"| {row['variant']} | failed: {row.get('error')} | | | | | | {row.get('wall_s') or ''} |")
            continue
        ratio = f"{row['p50_ms'] / best:.2f}" if best and row.get("p50_ms") else ""
        wall = f"{row['wall_s']:.0f}" if row.get("wall_s") else ""
        print(
            f"| {row['variant']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | {row['p50_ms']:.3f} "
            f"| {row['p90_ms']:.3f} | {ratio} | {row['size_mb']:.2f} | {wall} |"
        )
    if args.json:
        text = json.dumps({"rows": rows, "bench": result}, indent=2, default=str, ensure_ascii=False)
        Path(args.json).write_text(text.replace(str(HERE.parents[1]) + "/", "") + "\n")  # paths from the repository


if __name__ == "__main__":
    main()
