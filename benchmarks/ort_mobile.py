"""ONNX Runtime Mobile (``compile --target ort-mobile``) against the ONNX it comes from.

The ORT format is what an app that links ONNX Runtime (the Android AAR, the iOS pod, or a reduced
build from the operator config edgeptm writes) loads. This measures, on this x86 machine with the
onnxruntime wheel (which reads the ORT format): whether the conversion keeps accuracy, how much
smaller the reduced build's operator set is than the full runtime's, the file sizes, and the
latency of the .ort against the ONNX it was converted from (same kernels expected: a sanity check
that nothing was lost, not a phone measurement). Batch 1, each variant in its own process,
interleaved rounds (edgeptm.bench).

Text: the demo's fine-tuned MiniLM (``--checkpoint``; ``edgeptm demo`` writes runs/demo/checkpoint),
exported at sequence 128 and quantized to dynamic INT8 (the shipped recipe), converted for arm and
for amd64. Images (``--vision-checkpoint``, optional): EfficientNet-Lite0 fine-tuned at 224 (the
command is in benchmarks/openvino_latency.py), static QDQ INT8, converted for arm and amd64.

    .venv/bin/python benchmarks/ort_mobile.py --checkpoint runs/demo/checkpoint [--vision-checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.cli.bench import format_report
from edgeptm.compile import CompileOptions, compile
from edgeptm.environment import describe, describe_lines
from edgeptm.exporter import ExportOptions, export
from edgeptm.quantization import QuantizeOptions, quantize

SEQ_LEN = 128


def _once(path: Path, make: Any) -> Path:
    """Build an artifact unless a previous run left it complete."""
    if not (path / "manifest.json").is_file():
        make(path)
    return path


def _mobile(source: Path, platform: str) -> Any:
    return lambda p: compile(source, p, CompileOptions(target="ort-mobile", platform=platform), force=True)


def text_variants(ckpt: Path, work: Path) -> dict[str, Path]:
    onnx = _once(work / "onnx", lambda p: export(ckpt, p, ExportOptions(max_length=SEQ_LEN), force=True))
    int8 = _once(work / "int8", lambda p: quantize(onnx, p, QuantizeOptions(mode="dynamic-int8"), force=True))
    return {
        "ORT FP32 (ONNX)": onnx,
        "ORT dynamic INT8 (ONNX)": int8,
        ".ort from INT8, arm": _once(work / "ort-arm", _mobile(int8, "arm")),
        ".ort from INT8, amd64": _once(work / "ort-amd64", _mobile(int8, "amd64")),
    }


def vision_variants(ckpt: Path, work: Path) -> dict[str, Path]:
    fp32 = _once(work / "onnx", lambda p: export(ckpt, p, force=True))
    qdq = _once(
        work / "int8", lambda p: quantize(fp32, p, QuantizeOptions(mode="static-int8", calib_samples=256), force=True)
    )
    return {
        "ORT FP32 (ONNX)": fp32,
        "ORT static INT8 (ONNX QDQ)": qdq,
        ".ort from QDQ, arm": _once(work / "ort-arm", _mobile(qdq, "arm")),
        ".ort from QDQ, amd64": _once(work / "ort-amd64", _mobile(qdq, "amd64")),
    }


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def table(variants: dict[str, Path], report: dict[str, Any], reference: str) -> list[str]:
    by_path = {r["artifact"]: r for r in report["results"]}
    base = by_path[str(variants[reference])]["p50_ms"]
    lines = [
        "| variant | p50 ms | vs " + reference + " | val accuracy | size MB | operator kinds (reduced build) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, path in variants.items():
        m, row = _manifest(path), by_path[str(path)]
        accuracy = (m.get("metrics") or {}).get("accuracy")
        config = (m.get("compile") or {}).get("operator_config")
        size = sum(f["size"] for role, f in m["files"].items() if role in ("model", "weights")) / 1e6
        lines.append(
            f"| {name} | {row['p50_ms']:.2f} | {row['p50_ms'] / base:.2f}x | "
            f"{'n/a' if accuracy is None else f'{accuracy:.4f}'} | {size:.1f} | "
            f"{config['operators'] if config else 'full runtime'} |"
        )
    return lines


def built(variants: dict[str, Path]) -> list[str]:
    """Accuracy, size, operators and agreement with the parent ONNX, as each artifact's manifest records them."""
    lines = [
        "| variant | val accuracy | size MB | operator kinds (reduced build) | vs its ONNX: max diff, top-1 |",
        "|---|--:|--:|--:|---|",
    ]
    for name, path in variants.items():
        m = _manifest(path)
        accuracy = (m.get("metrics") or {}).get("accuracy")
        config = (m.get("compile") or {}).get("operator_config")
        check = m.get("validation") or {}
        size = sum(f["size"] for role, f in m["files"].items() if role in ("model", "weights")) / 1e6
        agreement = (
            f"{check['max_abs_diff']:.2g}, {check['top1_agreement']:.3f}"
            if config and "top1_agreement" in check
            else ""
        )
        lines.append(
            f"| {name} | {'n/a' if accuracy is None else f'{accuracy:.4f}'} | {size:.1f} | "
            f"{config['operators'] if config else 'full runtime'} | {agreement} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/demo/checkpoint", help="the demo's fine-tuned MiniLM")
    parser.add_argument("--vision-checkpoint", default=None, help="EfficientNet-Lite0 fine-tuned at 224 (optional)")
    parser.add_argument("--work", default="runs/ort-mobile", help="where this script keeps its artifacts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=270)
    parser.add_argument("--build-only", action="store_true", help="build and validate, no timing (a busy machine)")
    args = parser.parse_args()
    work = Path(args.work)
    runs = [("text", text_variants(Path(args.checkpoint), work / "text"), "ORT dynamic INT8 (ONNX)")]
    if args.vision_checkpoint:
        runs.append(
            ("vision", vision_variants(Path(args.vision_checkpoint), work / "vision"), "ORT static INT8 (ONNX QDQ)")
        )
    print("\n".join(describe_lines(describe())))
    for kind, variants, reference in runs:
        if args.build_only:
            print(f"\n## {kind}\n")
            print("\n".join(built(variants)))
            continue
        options = BenchOptions(
            batch_size=1,
            seq_len=SEQ_LEN,
            threads=args.threads,
            iterations=args.iterations,
            warmup=30,
            rounds=args.rounds,
        )
        report = bench(list(variants.values()), options)
        print(format_report(report))
        print(f"\n## {kind}\n")
        print("\n".join(table(variants, report, reference)))


if __name__ == "__main__":
    main()
