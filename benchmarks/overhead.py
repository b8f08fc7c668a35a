"""Is `edgeptm bench` itself a bottleneck? Its timed call path against a bare `session.run`.

The timed call in a bench worker is `backend.run(feed)` (input selection, `session.run`, output
naming) between two `perf_counter_ns` reads. Here both that path and a bare `session.run(None,
feed)` run on the *same* ONNX Runtime session in one process, alternating blocks of runs, so the
machine's slow episodes hit both alike. Target: edgeptm's p50 within 3% of the bare loop's.
A full `edgeptm bench` of the same artifact is printed for context (in its own process, so it
carries this VM's run-to-run noise, which is larger than 3%).

    .venv/bin/python benchmarks/overhead.py [--artifact runs/demo/onnx-int8] [--blocks 30] [--block 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edgeptm.artifacts import open_artifact
from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.data.text import artifact_val_data
from edgeptm.runtime import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default="runs/demo/onnx-int8")
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()

    artifact = open_artifact(args.artifact)
    predictor = load(artifact, threads=args.threads)
    feed = predictor.encode(artifact_val_data(artifact).texts[:1], args.seq_len)
    session, backend = predictor.backend.session, predictor.backend
    clock = time.perf_counter_ns

    def bare() -> None:
        session.run(None, feed)

    def ours() -> None:
        backend.run(feed)

    for _ in range(50):
        bare()
        ours()
    samples: dict[str, list[float]] = {"bare": [], "edgeptm": []}
    for block in range(args.blocks):
        order = (("bare", bare), ("edgeptm", ours)) if block % 2 == 0 else (("edgeptm", ours), ("bare", bare))
        for name, call in order:
            for _ in range(args.block):
                t0 = clock()
                call()
                samples[name].append((clock() - t0) / 1e6)
    b, o = (float(np.percentile(samples[k], 50)) for k in ("bare", "edgeptm"))
    print(
        f"same session, {args.blocks} alternating blocks of {args.block} runs "
        f"(batch 1, seq {args.seq_len}, {args.threads} threads):"
    )
    print(
        f"  bare session.run p50 {b:.3f} ms, edgeptm backend.run p50 {o:.3f} ms, ratio {o / b:.4f} "
        f"(target <= 1.03: {'met' if o / b <= 1.03 else 'MISSED'})"
    )
    predictor.close()

    report = bench(
        [args.artifact],
        BenchOptions(threads=args.threads, seq_len=args.seq_len, batch_size=1, iterations=300, warmup=50, rounds=10),
    )
    r = report["results"][0]
    print(
        f"context: edgeptm bench of the same artifact in its own process: p50 {r['p50_ms']:.3f} ms "
        f"(bare median of this run {statistics.median(samples['bare']):.3f} ms)"
    )


if __name__ == "__main__":
    main()
