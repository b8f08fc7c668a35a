"""MiniLM classifier: PyTorch eager FP32 vs ONNX Runtime FP32 vs ONNX Runtime dynamic INT8.

Batch 1, sequence length 128, 2 threads, each variant in its own process, interleaved rounds;
prints the table and the INT8/PyTorch p50 ratio against the target (<= 0.30). Uses the artifacts
that `make demo` leaves under runs/demo (or --root), so accuracy comes from the same run.

    .venv/bin/python benchmarks/minilm_latency.py [--root runs/demo] [--rounds 13] [--iterations 390]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.cli.bench import format_report
from edgeptm.environment import describe_lines

TARGET = 0.30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/demo", help="directory holding checkpoint/, onnx-fp32/, onnx-int8/")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--iterations", type=int, default=390, help="timed runs per variant, split over the rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()

    root = Path(args.root)
    paths = [root / "checkpoint", root / "onnx-fp32", root / "onnx-int8"]
    report = bench(
        paths,
        BenchOptions(
            batch_size=1,
            seq_len=args.seq_len,
            threads=args.threads,
            iterations=args.iterations,
            warmup=30,
            rounds=args.rounds,
        ),
    )
    print(format_report(report))
    print("\n" + "\n".join(describe_lines(report["environment"])))
    torch_p50, fp32_p50, int8_p50 = (r["p50_ms"] for r in report["results"])
    ratio = int8_p50 / torch_p50
    print(f"\nONNX Runtime FP32 / PyTorch FP32 p50: {fp32_p50 / torch_p50:.3f}")
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"ONNX Runtime INT8 / PyTorch FP32 p50: {ratio:.3f} (target <= {TARGET}: {verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
