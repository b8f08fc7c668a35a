"""Portable ONNX: the text artifacts built by the code before the change and after it, timed side
by side on ONNX Runtime CPU.

BEFORE, ``export`` wrote one graph, ONNX Runtime's fused one (com.microsoft Attention, BiasGelu,
...), as ``model.onnx``, and ``quantize`` (dynamic INT8, the text default) quantized that. AFTER,
``model.onnx`` is the portable graph (standard ONNX operators only), the fused graph is
``model.onnxruntime.onnx`` beside it (ONNX Runtime's backend runs it), and dynamic INT8 quantizes
the portable graph. Both sides export and quantize the same checkpoint, each with its own code
(BEFORE is a git worktree of ``--base``, run with PYTHONPATH pointing at it; AFTER this checkout),
and every artifact is timed by its own side's code, in a fresh process per round, the two sides
alternating which goes first, so that the machine's slow episodes hit both alike. In each process
``edgeptm.load(artifact, threads=N)`` opens the artifact as users do, then the backend alone is
timed (compute only: no tokenizer) on one fixed feed of random token ids.

    .venv/bin/python benchmarks/portable_onnx.py [--checkpoint DIR] [--before DIR] [--rounds 7]

Without ``--checkpoint`` it fine-tunes one the way benchmarks/load_verification.py does (minilm-l6,
one epoch on the test reviews: the demo's model, graph and files). ``--static`` also builds and
times ``quantize --mode static-int8`` on both sides. One more row times, against BEFORE's INT8
again, AFTER's INT8 artifact forced onto its portable ``model.onnx``: the design not taken
(dynamic INT8 of the portable graph alone, one file instead of two).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = r"""
import json, sys, time
import numpy as np
import onnxruntime, tokenizers  # heavy imports first: not what is measured
import edgeptm
path, threads, batch, seq, warmup, iterations = sys.argv[1], *map(int, sys.argv[2:7])
if len(sys.argv) > 7:  # AFTER only: a given graph of the artifact (the portable one)
    from edgeptm.artifacts import open_artifact
    from edgeptm.runtime.ort_backend import OrtBackend
    backend = OrtBackend(open_artifact(path), threads=threads, graph=sys.argv[7])
else:
    backend = edgeptm.load(path, threads=threads).backend
rng = np.random.default_rng(0)
feed = {}
for name in backend.input_names:
    if name == "input_ids":
        feed[name] = rng.integers(1000, 20000, (batch, seq)).astype(np.int64)
    elif name == "attention_mask":
        feed[name] = np.ones((batch, seq), np.int64)
    else:
        feed[name] = np.zeros((batch, seq), np.int64)
for _ in range(warmup):
    backend.run(feed)
times = []
for _ in range(iterations):
    start = time.perf_counter()
    backend.run(feed)
    times.append((time.perf_counter() - start) * 1e3)
times.sort()
graph = getattr(backend, "settings", {}).get("graph", "model.onnx (model)")  # BEFORE's backend ran 'model'
print(json.dumps({"p50_ms": times[len(times) // 2], "p90_ms": times[int(len(times) * 0.9)],
                  "mean_ms": sum(times) / len(times), "graph": graph}))
"""

# The graph an ONNX Runtime session of the artifact executes, after its own rewrites (the
# backend's default graph, its session options and the optimizers the manifest keeps off).
SESSION_GRAPH = r"""
import hashlib, sys, tempfile
from edgeptm.artifacts import open_artifact
from edgeptm.runtime.ort_backend import OrtBackend
with tempfile.TemporaryDirectory() as tmp:
    OrtBackend(open_artifact(sys.argv[1]), threads=int(sys.argv[2]), save_optimized_to=f"{tmp}/s.onnx").close()
    print(hashlib.sha256(open(f"{tmp}/s.onnx", "rb").read()).hexdigest())
"""


def side_env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(source: Path, *args: object) -> float:
    """Run an edgeptm command with ``source``'s code; returns its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edgeptm.cli", *map(str, args)],
        check=True,
        cwd=source,
        env=side_env(source),
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def build_checkpoint(directory: Path) -> Path:
    reviews = ROOT / "tests" / "assets" / "reviews.csv"
    cli(ROOT, "finetune", "--model", "minilm-l6", "--train", reviews, "--epochs", "1", "--out", directory / "ckpt")
    return directory / "ckpt"


def build_side(source: Path, checkpoint: Path, out: Path, static: bool) -> tuple[dict[str, Path], dict[str, float]]:
    """Export and quantize ``checkpoint`` with ``source``'s code; the artifacts and build seconds."""
    artifacts = {"fp32": out / "onnx", "int8 (dynamic)": out / "int8"}
    seconds = {"export": cli(source, "export", checkpoint, "--out", artifacts["fp32"])}
    seconds["quantize dynamic-int8"] = cli(source, "quantize", artifacts["fp32"], "--out", artifacts["int8 (dynamic)"])
    if static:
        artifacts["int8 (static QDQ)"] = out / "static"
        seconds["quantize static-int8"] = cli(
            source, "quantize", artifacts["fp32"], "--mode", "static-int8", "--out", artifacts["int8 (static QDQ)"]
        )
    return artifacts, seconds


def probe(source: Path, artifact: Path, args: argparse.Namespace, graph: str | None = None) -> dict[str, object]:
    settings = [args.threads, args.batch_size, args.seq_len, args.warmup, args.iterations, *([graph] if graph else [])]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(artifact), *map(str, settings)],
        capture_output=True,
        text=True,
        env=side_env(source),
        check=True,
        cwd=source,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe_artifact(path: Path) -> str:
    """Its ONNX files: size and operator domains (model.onnx is what every compile target reads)."""
    import onnx

    manifest = json.loads((path / "manifest.json").read_text())
    entries = sorted((e for e in manifest["files"].values() if e["path"].endswith(".onnx")), key=lambda e: e["path"])
    parts = []
    for entry in entries:
        domains = sorted({n.domain or "ai.onnx" for n in onnx.load(str(path / entry["path"])).graph.node})
        parts.append(f"{entry['path']} {entry['size'] / 1e6:.1f} MB ({', '.join(domains)})")
    return "; ".join(parts)


def session_graph(source: Path, artifact: Path, threads: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SESSION_GRAPH, str(artifact), str(threads)],
        capture_output=True,
        text=True,
        env=side_env(source),
        check=True,
        cwd=source,
    )
    return out.stdout.strip().splitlines()[-1]


def same_ort_graph(before: Path, after: Path) -> str:
    """Whether the file ONNX Runtime runs for AFTER's artifact (its derived graph if any, else
    model.onnx) has the bytes of BEFORE's model.onnx (what ONNX Runtime ran before)."""
    files = json.loads((after / "manifest.json").read_text())["files"]
    ran = files.get("ort-model", files["model"])
    old = json.loads((before / "manifest.json").read_text())["files"]["model"]
    return f"yes ({ran['path']})" if ran["sha256"] == old["sha256"] else f"no ({ran['path']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="A text checkpoint artifact [default: build one].")
    parser.add_argument("--before", default=None, help="A tree of the code before the change [default: a worktree].")
    parser.add_argument("--base", default="f344583", help="The commit before the change [default: %(default)s].")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=150, help="timed runs per process")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--static", action="store_true", help="also quantize --mode static-int8 on both sides")
    args = parser.parse_args()

    from edgeptm.environment import describe, describe_lines

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else build_checkpoint(tmp_path)
        before = Path(args.before) if args.before else tmp_path / "before"
        if not args.before:
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(before), args.base],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        try:
            sides = {"before": before, "after": ROOT}
            built = {
                name: build_side(source, checkpoint, tmp_path / name, args.static) for name, source in sides.items()
            }
            # variant -> (before's artifact, after's artifact, the graph AFTER is forced onto or None)
            variants = {kind: (built["before"][0][kind], built["after"][0][kind], None) for kind in built["after"][0]}
            dynamic = variants["int8 (dynamic)"]
            variants["int8 (dynamic), AFTER on its portable model.onnx"] = (dynamic[0], dynamic[1], "model")
            for variant in variants.values():  # one untimed round each: page cache and .pyc files
                probe(before, variant[0], args)
                probe(ROOT, variant[1], args, variant[2])
            runs: dict[tuple[str, str], list[dict[str, object]]] = {(n, v): [] for n in sides for v in variants}
            for i in range(args.rounds):
                for name, (old, new, graph) in variants.items():
                    pair = [("before", before, old, None), ("after", ROOT, new, graph)]
                    for side, source, artifact, forced in pair if i % 2 == 0 else pair[::-1]:
                        runs[side, name].append(probe(source, artifact, args, forced))
            kinds = list(built["after"][0])
            described = {(n, k): describe_artifact(built[n][0][k]) for n in sides for k in kinds}
            identical = {k: same_ort_graph(built["before"][0][k], built["after"][0][k]) for k in kinds}
            executed = {
                k: session_graph(before, built["before"][0][k], args.threads)
                == session_graph(ROOT, built["after"][0][k], args.threads)
                for k in kinds
            }
        finally:
            if not args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)

    for line in describe_lines(describe()):
        print(line)
    print(
        f"checkpoint: {checkpoint}; batch {args.batch_size}, seq {args.seq_len}, {args.threads} intra-op thread(s); "
        f"{args.rounds} rounds, each artifact in a fresh process per round ({args.warmup} warm-up + "
        f"{args.iterations} timed runs), the sides alternating; medians over rounds of each process's p50 (min-max)\n"
    )
    print("| artifact | before ms | after ms | after / before | paired ratio (median of rounds) | ONNX Runtime ran |")
    print("|---|--:|--:|--:|--:|---|")
    for name in variants:
        b = [float(r["p50_ms"]) for r in runs["before", name]]
        a = [float(r["p50_ms"]) for r in runs["after", name]]
        paired = statistics.median(x / y for x, y in zip(a, b))
        ran = f"before: {runs['before', name][0]['graph']}; after: {runs['after', name][0]['graph']}"
        mb, ma = statistics.median(b), statistics.median(a)
        print(
            f"| {name} | {mb:.2f} ({min(b):.2f}-{max(b):.2f}) | {ma:.2f} ({min(a):.2f}-{max(a):.2f}) | "
            f"{ma / mb:.3f}x | {paired:.3f}x | {ran} |"
        )
    print(
        "\n| side | artifact | graph files (operator domains) | ONNX Runtime's file: same bytes as before's | "
        "session's executed graph: same as before's |"
    )
    print("|---|---|---|---|---|")
    for (name, kind), text in described.items():
        same = (identical[kind], "yes" if executed[kind] else "no") if name == "after" else ("", "")
        print(f"| {name} | {kind} | {text} | {same[0]} | {same[1]} |")
    print("\n| step | before s | after s |")
    print("|---|--:|--:|")
    for step in built["after"][1]:
        print(f"| {step} | {built['before'][1][step]:.1f} | {built['after'][1][step]:.1f} |")


if __name__ == "__main__":
    main()
