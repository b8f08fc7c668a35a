"""What each ONNX graph of the comparison holds, and where ONNX Runtime spends its time in it.

Runs in the project's venv. For every ONNX variant of compare.py: the operator counts of the file
as written (the fusions the offline optimizer and the quantizer made), and, with --profile, ONNX
Runtime's own per-node profile at batch 1, seq 128, 2 threads (the session compare.py builds,
edgeptm's session hint included): kernel time per operator type, averaged over the profiled runs.
The profiled sessions live in this one process and take turns in blocks of 10 runs (rotating
who goes first); the sums attribute time within a graph -- compare latencies with compare.py.

    .venv/bin/python benchmarks/optimum/graph_report.py [--profile] [--runs 200]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import session_options, variants  # noqa: E402


def onnx_file(row: dict) -> tuple[Path, list[str] | None]:
    path = Path(row["path"])
    if row["kind"] == "edgeptm":
        manifest = json.loads((path / "manifest.json").read_text())
        hints = (manifest.get("runtime") or {}).get("onnxruntime") or {}
        return path / manifest["files"]["model"]["path"], hints.get("disabled_optimizers")
    return path, row.get("disabled_optimizers")


def op_counts(path: Path) -> collections.Counter:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return collections.Counter(n.op_type for n in model.graph.node if n.op_type != "Constant")


def runtime_ops(path: Path, disabled: list[str] | None, threads: int) -> collections.Counter:
    """Operator counts of the graph ONNX Runtime actually runs (after its session-level rewrites)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(threads)
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
        return op_counts(Path(options.optimized_model_filepath))


def profile(files: dict, feed: dict, runs: int, threads: int, block: int = 10) -> dict[str, dict[str, float]]:
    """Mean kernel microseconds per call, by operator type, for every file; the sessions take turns
    in blocks of ``block`` runs (rotating who goes first) so machine load hits them alike."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for i, (name, (path, disabled)) in enumerate(files.items()):
            options = session_options(threads)
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tmp, f"profile{i}")
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
            )
            bound = {k.name: feed[k.name] for k in session.get_inputs()}
            for _ in range(30):  # warm-up, dropped below
                session.run(None, bound)
            sessions[name] = (session, bound)
        names = list(sessions)
        for b in range(max(1, runs // block)):
            for k in range(len(names)):
                session, bound = sessions[names[(b + k) % len(names)]]
                for _ in range(2):  # wake the pool (dropped with the warm-up below)
                    session.run(None, bound)
                for _ in range(block):
                    session.run(None, bound)
        results = {}
        for name, (session, _) in sessions.items():
            events = json.loads(Path(session.end_profiling()).read_text())
            calls: list[dict[str, float]] = []  # kernel time per op type, one dict per session.run
            for e in events:
                if e.get("cat") == "Session" and e["name"] == "model_run":
                    calls.append({"_end": e["ts"] + e["dur"], "_start": e["ts"]})
            per_op: dict[str, float] = collections.defaultdict(float)
            kept = 0
            timed = set()
            for b in range(max(1, runs // block)):
                first = 30 + b * (block + 2) + 2
                timed.update(range(first, first + block))
            windows = [(c["_start"], c["_end"]) for i, c in enumerate(calls) if i in timed]
            kept = len(windows)
            starts = np.array([w[0] for w in windows])
            ends = np.array([w[1] for w in windows])
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    i = np.searchsorted(starts, e["ts"], side="right") - 1
                    if i >= 0 and e["ts"] <= ends[i]:
                        per_op[e["args"]["op_name"]] += e["dur"]
            results[name] = dict(sorted(((op, us / kept) for op, us in per_op.items()), key=lambda kv: -kv[1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/demo")
    parser.add_argument("--optimum", default=str(HERE / "out" / "optimum"))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()

    from edgeptm.artifacts import open_artifact
    from edgeptm.data.text import artifact_val_data
    from edgeptm.runtime.preprocess import TextPreprocessor

    checkpoint = open_artifact(Path(args.root) / "checkpoint")
    feed = TextPreprocessor(checkpoint).encode(artifact_val_data(checkpoint).texts[:1], args.seq_len)
    rows = [r for r in variants(Path(args.root), Path(args.optimum), diagnostic=True) if r["kind"] != "torch"]
    interesting = (
        "EmbedLayerNormalization",
        "QEmbedLayerNormalization",
        "Gather",
        "LayerNormalization",
        "SkipLayerNormalization",
        "Attention",
        "QAttention",
        "BiasGelu",
        "MatMul",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "DequantizeLinear",
        "Add",
        "Mul",
        "Cast",
        "Gemm",
    )
    print("## Operators in each file (as written)\n")
    print("| variant | nodes | " + " | ".join(interesting) + " |")
    print("|---|--:|" + "--:|" * len(interesting))
    files = {}
    for row in rows:
        path, disabled = onnx_file(row)
        files[row["name"]] = (path, disabled)
        counts = op_counts(path)
        cells = " | ".join(str(counts.get(op, 0)) for op in interesting)
        print(f"| {row['name']} | {sum(counts.values())} | {cells} |")
    if not args.profile:
        return
    print(
        f"\n## ONNX Runtime kernel time per call (us), batch 1, seq {args.seq_len}, {args.threads} threads, "
        f"{args.runs} profiled runs; ops of the graph ONNX Runtime runs after its own rewrites\n"
    )
    profiles = profile(files, feed, args.runs, args.threads)
    for name, (path, disabled) in files.items():
        by_op = profiles[name]
        total = sum(by_op.values())
        top = ", ".join(f"{op} {us:.0f}" for op, us in list(by_op.items())[:8])
        ops = runtime_ops(path, disabled, args.threads)
        print(f"- **{name}**: kernels {total / 1000:.2f} ms/call: {top}")
        print(
            f"  runtime graph: {sum(ops.values())} nodes, "
            + ", ".join(f"{op} {n}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1])[:10])
        )


if __name__ == "__main__":
    main()
