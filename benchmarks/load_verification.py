"""What verification costs at load: `edgeptm.load()` of the demo's INT8 artifact, before and after
the trust boundary (manifest schema, confined paths, no unlisted files, digest) was added.

Both sides run the same measurement, each in a fresh process per round, alternating, so that the
machine's slow episodes hit both alike: BEFORE is a git worktree of ``--base`` (the commit before
the change), AFTER is this checkout. In each process the heavy imports (onnxruntime, tokenizers)
are done first, then ``open_artifact`` (everything verification does: read and check the
manifest, sha256 of every file) and ``load`` (the same plus the ONNX Runtime session and the
tokenizer) are timed, each once, page cache warm (the files were read by the previous rounds).

    .venv/bin/python benchmarks/load_verification.py --artifact runs/demo/onnx-int8 [--rounds 15]

Without ``--artifact`` it builds one the way the demo does (minilm-l6 fine-tuned on the test
reviews for one epoch, exported, dynamic INT8): the same model, graph and files as the demo's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = r"""
import json, sys, time
import onnxruntime, tokenizers  # heavy imports first: not what is measured
import edgeptm.runtime
from edgeptm.artifacts import open_artifact
path = sys.argv[1]
t0 = time.perf_counter(); open_artifact(path); t1 = time.perf_counter()
predictor = edgeptm.runtime.load(path); t2 = time.perf_counter()
predictor.predict(["a gripping, beautifully shot film"])
print(json.dumps({"open_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3}))
"""


def build_artifact(directory: Path) -> Path:
    edgeptm = [sys.executable, "-m", "edgeptm.cli"]
    reviews = ROOT / "tests" / "assets" / "reviews.csv"
    steps = [
        ["finetune", "--model", "minilm-l6", "--train", reviews, "--epochs", "1", "--out", directory / "ckpt"],
        ["export", directory / "ckpt", "--out", directory / "onnx"],
        ["quantize", directory / "onnx", "--mode", "dynamic-int8", "--out", directory / "int8"],
    ]
    for step in steps:
        subprocess.run([*edgeptm, *map(str, step)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return directory / "int8"


def probe(source: Path, artifact: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(artifact)], capture_output=True, text=True, env=env, check=True, cwd=source
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None, help="The INT8 artifact to load [default: build one].")
    parser.add_argument("--base", default="6e7ad74", help="The commit before the change [default: %(default)s].")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from edgeptm.artifacts import open_artifact
    from edgeptm.environment import describe, describe_lines

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        artifact = Path(args.artifact) if args.artifact else build_artifact(tmp_path / "built")
        opened = open_artifact(artifact)
        before = tmp_path / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.base], cwd=ROOT, check=True, capture_output=True
        )
        try:
            sides = {"before": before, "after": ROOT}
            for source in sides.values():  # one untimed round each: page cache and .pyc files
                probe(source, artifact)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
            for i in range(args.rounds):
                order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
                for name, source in order:
                    runs[name].append(probe(source, artifact))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)

    for line in describe_lines(describe()):
        print(line)
    size = opened.size_bytes() / 1e6
    print(
        f"artifact: {artifact} ({opened.kind}, {opened.manifest.get('precision')}, "
        f"{len(opened.manifest['files'])} files, {size:.1f} MB); digest {opened.digest}"
    )
    print(f"{args.rounds} rounds, each side in a fresh process per round, alternating; medians (min-max)\n")
    print("| step | before ms | after ms | after / before |")
    print("|---|--:|--:|--:|")
    for key, label in (("open_ms", "open_artifact (verify)"), ("load_ms", "load (verify + session + tokenizer)")):
        b = [r[key] for r in runs["before"]]
        a = [r[key] for r in runs["after"]]
        mb, ma = statistics.median(b), statistics.median(a)
        print(
            f"| {label} | {mb:.2f} ({min(b):.2f}-{max(b):.2f}) | {ma:.2f} ({min(a):.2f}-{max(a):.2f}) | "
            f"{ma / mb:.3f}x |"
        )


if __name__ == "__main__":
    main()
