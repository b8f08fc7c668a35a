"""EfficientNet-Lite0: PyTorch eager FP32 vs ONNX Runtime FP32 vs static INT8 (QDQ) [vs FP16].

Batch 1, 2 threads, each variant in its own process, interleaved rounds; prints the table and the
INT8 p50 ratios against the targets (INT8 <= 0.45 x ONNX Runtime FP32 and <= 0.25 x PyTorch).

Two settings:
- ``--root runs/demo-vision``: the artifacts `edgeptm demo-vision` leaves (fine-tuned on
  Fashion-MNIST at the demo's resolution), so accuracy comes from the same run;
- ``--imagenet-224``: the pretrained model as-is at 224x224 (ImageNet head), INT8 calibrated on
  256 Fashion-MNIST training images (latency does not depend on what the pixels show).

    .venv/bin/python benchmarks/vision_latency.py [--root runs/demo-vision] [--imagenet-224] [--rounds 13]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.cli.bench import format_report
from edgeptm.environment import describe_lines

TARGET_VS_ORT = 0.45
TARGET_VS_TORCH = 0.25


def imagenet_224(work: Path) -> list[Path]:
    """As-is EfficientNet-Lite0 at 224: export, static INT8 (calibrated on Fashion-MNIST)."""
    from edgeptm.data.vision_demo import fashion_mnist
    from edgeptm.exporter import export
    from edgeptm.models.pretrained import pretrained_artifact
    from edgeptm.quantization import QuantizeOptions, quantize

    ckpt = pretrained_artifact("efficientnet-lite0")
    onnx = work / "onnx-fp32"
    if not (onnx / "manifest.json").is_file():
        export(ckpt, onnx, force=True)
    int8 = work / "onnx-int8"
    if not (int8 / "manifest.json").is_file():
        calib = str(fashion_mnist(fetch=True).train)
        quantize(onnx, int8, QuantizeOptions(mode="static-int8", calib=calib, calib_samples=256), force=True)
    return [ckpt.path, onnx, int8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/demo-vision", help="holds checkpoint/, onnx-fp32/, onnx-int8/")
    parser.add_argument("--imagenet-224", action="store_true", help="the as-is model at 224 instead of --root")
    parser.add_argument("--work", default="runs/vision-224", help="where --imagenet-224 keeps its artifacts")
    parser.add_argument("--fp16", action="store_true", help="add --root's onnx-fp16 variant")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--iterations", type=int, default=650, help="timed runs per variant, split over the rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()

    if args.imagenet_224:
        paths = imagenet_224(Path(args.work))
    else:
        root = Path(args.root)
        paths = [root / "checkpoint", root / "onnx-fp32", root / "onnx-int8"]
        if args.fp16:
            paths.append(root / "onnx-fp16")
    options = BenchOptions(
        batch_size=1, threads=args.threads, iterations=args.iterations, warmup=50, rounds=args.rounds
    )
    report = bench(paths, options)
    print(format_report(report))
    print("\n" + "\n".join(describe_lines(report["environment"])))
    torch_p50, fp32_p50, int8_p50 = (r["p50_ms"] for r in report["results"][:3])
    for name, ratio, target in (
        ("ONNX Runtime FP32", int8_p50 / fp32_p50, TARGET_VS_ORT),
        ("PyTorch eager FP32", int8_p50 / torch_p50, TARGET_VS_TORCH),
    ):
        verdict = "met" if ratio <= target else "MISSED"
        print(f"INT8 / {name} p50: {ratio:.3f} (target <= {target}: {verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
