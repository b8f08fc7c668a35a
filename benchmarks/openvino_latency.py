"""OpenVINO against ONNX Runtime: the MiniLM classifier (seq 128) and EfficientNet-Lite0 (224).

Batch 1, 2 threads, each variant in its own process, interleaved rounds (edgeptm.bench); prints
the p50 table, the ratios against the targets and the accuracies.

MiniLM (the demo's fine-tuned classifier, ``runs/demo/checkpoint``): ONNX Runtime FP32 (plain
export), ONNX Runtime dynamic INT8 (the shipped recipe: fused export + dynamic INT8, and the same
from the plain export), OpenVINO FP32 (dynamic shapes), BF16 (static [1,128]), NNCF INT8 (static
[1,128] and dynamic). Targets: the fastest edgeptm artifact <= 5.5 ms p50 and <= 0.75 x the
fastest ONNX Runtime dynamic INT8 p50 of the same run, within 1 point of FP32 accuracy (the
1,000-sentence validation split the checkpoint carries).

The demo fine-tunes at max length 64 and the targets are at sequence 128, so the MiniLM variants
come from ONNX exports that serve up to 128 tokens (``edgeptm export --max-length 128``: same
weights; validation and accuracy measured on texts tokenized up to 128).

EfficientNet-Lite0 at 224, fine-tuned on Fashion-MNIST at 224 (``--vision-checkpoint``; the
command that makes it is below), so accuracy is measured on labelled images: ONNX Runtime FP32
and static QDQ INT8 (calibrated on 256 images of the checkpoint's training sample), OpenVINO FP32,
OpenVINO running the QDQ file, NNCF INT8 (300 images), ExecuTorch XNNPACK INT8 (100 images), all
static [1,3,224,224]. Target: the fastest edgeptm INT8 artifact <= 0.85 x ONNX Runtime QDQ's p50,
within 1.5 points of FP32 accuracy (the 2,000-image validation split the checkpoint carries).

    .venv/bin/edgeptm finetune --model efficientnet-lite0 --train DATA/train --val DATA/val \
        --image-size 224 --epochs 1 --train-limit 6000 --val-limit 2000 --out runs/lite0-224/checkpoint
    (DATA: the Fashion-MNIST folders 'edgeptm demo-vision' fetches and caches)

    .venv/bin/python benchmarks/openvino_latency.py [--work runs/openvino] [--only text|vision] [--rounds 13]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.cli.bench import format_report
from edgeptm.compile import CompileOptions, compile
from edgeptm.exporter import ExportOptions, export
from edgeptm.quantization import QuantizeOptions, quantize
from edgeptm.environment import describe_lines

TEXT_P50_MS = 5.5
TEXT_VS_ORT_INT8 = 0.75
TEXT_MAX_DROP = 1.0
VISION_VS_ORT_QDQ = 0.85
VISION_MAX_DROP = 1.5
SEQ_LEN = 128


def _once(path: Path, make: Any) -> Path:
    """Build an artifact unless a previous run left it complete."""
    if not (path / "manifest.json").is_file():
        make(path)
    return path


def text_variants(demo: Path, work: Path, calib_samples: int) -> dict[str, Path]:
    plain = _once(
        work / "onnx-plain",
        lambda p: export(demo, p, ExportOptions(optimize=False, max_length=SEQ_LEN), force=True),
    )
    fused = _once(work / "onnx-fused", lambda p: export(demo, p, ExportOptions(max_length=SEQ_LEN), force=True))
    static = [f"input_ids:1x{SEQ_LEN}"]

    def ov(precision: str, shapes: list[str] | None) -> Any:
        samples = calib_samples if precision == "int8" else None  # only NNCF calibrates
        options = CompileOptions(target="openvino", precision=precision, shapes=shapes, calib_samples=samples)
        return lambda p: compile(plain, p, options, force=True)

    return {
        "ORT FP32 (plain export)": plain,
        "ORT dynamic INT8 (shipped recipe)": _once(
            work / "ort-int8-fused", lambda p: quantize(fused, p, QuantizeOptions(mode="dynamic-int8"), force=True)
        ),
        "ORT dynamic INT8 (plain export)": _once(
            work / "ort-int8-plain", lambda p: quantize(plain, p, QuantizeOptions(mode="dynamic-int8"), force=True)
        ),
        "OpenVINO FP32 dynamic": _once(work / "ov-fp32-dynamic", ov("fp32", None)),
        "OpenVINO BF16 static": _once(work / "ov-bf16-static", ov("bf16", static)),
        "OpenVINO INT8 dynamic": _once(work / "ov-int8-dynamic", ov("int8", None)),
        "OpenVINO INT8 static": _once(work / "ov-int8-static", ov("int8", static)),
    }


def vision_variants(ckpt: Path, work: Path, calib_samples: int) -> dict[str, Path]:
    if not (ckpt / "manifest.json").is_file():
        raise SystemExit(f"{ckpt}: no checkpoint; make it with the finetune command in this script's docstring")
    fp32 = _once(work / "onnx-fp32", lambda p: export(ckpt, p, force=True))
    qdq = _once(
        work / "onnx-int8",
        lambda p: quantize(fp32, p, QuantizeOptions(mode="static-int8", calib_samples=256), force=True),
    )
    static = ["pixel_values:1x3x224x224"]

    def build(source: Path, target: str = "openvino", **kwargs: Any) -> Any:
        options = CompileOptions(target=target, shapes=static, **kwargs)
        return lambda p: compile(source, p, options, force=True)

    return {
        "ORT FP32": fp32,
        "ORT static INT8 (QDQ)": qdq,
        "OpenVINO FP32 static": _once(work / "ov-fp32-static", build(fp32, precision="fp32")),
        "OpenVINO INT8 (the QDQ file)": _once(work / "ov-qdq-static", build(qdq)),
        "OpenVINO INT8 (NNCF)": _once(
            work / "ov-nncf-static", build(fp32, precision="int8", calib_samples=calib_samples)
        ),
        "ExecuTorch INT8 (XNNPACK)": _once(
            work / "executorch-int8", build(ckpt, target="executorch", precision="int8", calib_samples=100)
        ),
    }


def run(variants: dict[str, Path], args: argparse.Namespace, iterations: int, warmup: int) -> dict[str, Any]:
    options = BenchOptions(
        batch_size=1,
        seq_len=SEQ_LEN,
        threads=args.threads,
        iterations=iterations,
        warmup=warmup,
        rounds=args.rounds,
    )
    report = bench(list(variants.values()), options)
    print(format_report(report))
    return report


def _p50(report: dict[str, Any], variants: dict[str, Path]) -> dict[str, float]:
    by_path = {r["artifact"]: r for r in report["results"]}
    return {name: by_path[str(path)]["p50_ms"] for name, path in variants.items()}


def _metric(path: Path, key: str) -> Any:
    return (json.loads((path / "manifest.json").read_text()).get("metrics") or {}).get(key)


def accuracy_lines(variants: dict[str, Path], p50: dict[str, float], fp32_name: str) -> list[str]:
    """The p50 table with each artifact's validation accuracy (recorded when it was built)."""
    fp32 = _metric(variants[fp32_name], "accuracy")
    lines = ["| variant | p50 ms | val accuracy | vs FP32 (points) |", "|---|--:|--:|--:|"]
    for name, path in variants.items():
        acc = _metric(path, "accuracy")
        if acc is None or fp32 is None:
            lines.append(f"| {name} | {p50[name]:.2f} | n/a | n/a |")
        else:
            lines.append(f"| {name} | {p50[name]:.2f} | {acc:.4f} | {100 * (acc - fp32):+.2f} |")
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def text_summary(variants: dict[str, Path], p50: dict[str, float]) -> list[str]:
    lines = accuracy_lines(variants, p50, "ORT FP32 (plain export)")
    fp32 = _metric(variants["ORT FP32 (plain export)"], "accuracy")
    ort = min(v for k, v in p50.items() if k.startswith("ORT dynamic INT8"))
    ours = {k: v for k, v in p50.items() if k.startswith("OpenVINO")}
    best = min(ours, key=ours.get)
    acc_best = _metric(variants[best], "accuracy")
    drop = 100 * (fp32 - acc_best)
    return lines + [
        "",
        f"fastest: {best} at {ours[best]:.2f} ms (target <= {TEXT_P50_MS} ms: {_verdict(ours[best] <= TEXT_P50_MS)})",
        f"{best} / fastest ONNX Runtime dynamic INT8 ({ort:.2f} ms): {ours[best] / ort:.3f} "
        f"(target <= {TEXT_VS_ORT_INT8}: {_verdict(ours[best] / ort <= TEXT_VS_ORT_INT8)})",
        f"{best} accuracy {acc_best:.4f} vs FP32 {fp32:.4f}: {-drop:+.2f} points "
        f"(target within {TEXT_MAX_DROP}: {_verdict(drop <= TEXT_MAX_DROP)})",
    ]


def vision_summary(variants: dict[str, Path], p50: dict[str, float]) -> list[str]:
    lines = accuracy_lines(variants, p50, "ORT FP32")
    fp32 = _metric(variants["ORT FP32"], "accuracy")
    qdq = p50["ORT static INT8 (QDQ)"]
    ours = {k: v for k, v in p50.items() if "INT8" in k and not k.startswith("ORT")}
    best = min(ours, key=ours.get)
    ratio = ours[best] / qdq
    drop = 100 * (fp32 - _metric(variants[best], "accuracy"))
    return lines + [
        "",
        f"fastest edgeptm INT8: {best} at {ours[best]:.2f} ms; / ORT QDQ ({qdq:.2f} ms): {ratio:.3f} "
        f"(target <= {VISION_VS_ORT_QDQ}: {_verdict(ratio <= VISION_VS_ORT_QDQ)})",
        f"{best} accuracy vs FP32: {-drop:+.2f} points (target within {VISION_MAX_DROP}: "
        f"{_verdict(drop <= VISION_MAX_DROP)})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="runs/demo/checkpoint", help="the demo's fine-tuned MiniLM checkpoint")
    parser.add_argument(
        "--vision-checkpoint", default="runs/lite0-224/checkpoint", help="EfficientNet-Lite0 fine-tuned at 224"
    )
    parser.add_argument("--work", default="runs/openvino", help="where this script keeps its artifacts")
    parser.add_argument("--only", choices=["text", "vision"], default=None)
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--iterations", type=int, default=390, help="MiniLM: timed runs per variant, over the rounds")
    parser.add_argument(
        "--vision-iterations", type=int, default=1300, help="EfficientNet: timed runs per variant (~3 s at 2.4 ms)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-samples", type=int, default=300, help="NNCF calibration inputs")
    parser.add_argument("--json", default=None, help="also write the reports here")
    args = parser.parse_args()
    work = Path(args.work)
    reports: dict[str, Any] = {}
    if args.only in (None, "text"):
        variants = text_variants(Path(args.demo), work / "minilm", args.calib_samples)
        print(f"## MiniLM classifier, batch 1, sequence {SEQ_LEN}, {args.threads} threads\n")
        reports["text"] = run(variants, args, args.iterations, warmup=30)
        print("\n" + "\n".join(text_summary(variants, _p50(reports["text"], variants))) + "\n")
    if args.only in (None, "vision"):
        variants = vision_variants(Path(args.vision_checkpoint), work / "lite0-224-finetuned", args.calib_samples)
        print(f"## EfficientNet-Lite0 fine-tuned at 224x224, batch 1, {args.threads} threads\n")
        reports["vision"] = run(variants, args, args.vision_iterations, warmup=50)
        print("\n" + "\n".join(vision_summary(variants, _p50(reports["vision"], variants))) + "\n")
    print("\n".join(describe_lines(next(iter(reports.values()))["environment"])))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
