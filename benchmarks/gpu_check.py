"""GPU check: TensorRT engines (FP32, FP16, INT8 Q/DQ) and an AOTInductor CUDA package for the demo
models, each validated and benchmarked beside ONNX Runtime CPU and PyTorch eager; one table.

For a user with an NVIDIA GPU (and TensorRT: pip install 'edgeptm[tensorrt]'). Whatever cannot be
built on the machine (no TensorRT, no GPU) is a row that says why, never a crash, so the same
script also checks the AOTInductor CUDA path on a GPU machine without TensorRT.

    python benchmarks/gpu_check.py [SOURCE ...] [--out runs/gpu-check] [--duration 5] [--batch 1]

SOURCE: checkpoint artifacts or registered model names (default: runs/demo/checkpoint and
runs/demo-vision/checkpoint where they exist, else the packaged efficientnet-lite0 as-is).
Engines are checked against ONNX Runtime running the same ONNX file (TensorRT) or eager PyTorch
(AOTInductor) on the artifact's validation inputs, and scored on its labelled split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact, open_artifact
from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.compile import CompileOptions, compile
from edgeptm.errors import EdgeptmError
from edgeptm.exporter import ExportOptions, export
from edgeptm.quantization import QuantizeOptions, quantize

DEFAULT_SOURCES = ("runs/demo/checkpoint", "runs/demo-vision/checkpoint")


def _stage(path: Path, make: Any, *args: Any) -> tuple[Artifact | None, str]:
    """Reuse a finished artifact at ``path``, else ``make(*args, path, ...)`` it; an error becomes
    the row's reason."""
    if (path / "manifest.json").is_file():
        return open_artifact(path), "reused"
    started = time.perf_counter()
    try:
        return make(args[0], path, *args[1:], force=True), f"built in {time.perf_counter() - started:.0f} s"
    except EdgeptmError as exc:
        return None, str(exc)


def variants_for(source: str, out: Path, max_batch: int) -> list[dict[str, Any]]:
    ckpt = open_artifact(source)
    name = ckpt.manifest["model"].get("source", ckpt.path.name)
    root = out / f"{name}-{ckpt.path.name}".replace("/", "_").replace(":", "_")
    rows: list[dict[str, Any]] = [{"model": name, "variant": "PyTorch eager FP32 (CPU)", "artifact": ckpt}]
    # Standard ONNX operators only: TensorRT's parser does not know ONNX Runtime's fused ones.
    onnx, how = _stage(root / "onnx-fp32", export, ckpt, ExportOptions(optimize=False))
    rows.append({"model": name, "variant": "ONNX Runtime FP32 (CPU)", "artifact": onnx, "note": how})
    if onnx is None:
        return rows
    onnx_variants = {"fp32": onnx}
    onnx_variants["fp16"], fp16_how = _stage(root / "onnx-fp16", quantize, onnx, QuantizeOptions(mode="fp16"))
    int8_options = QuantizeOptions(mode="static-int8", activations="int8", calib_samples=256)
    onnx_variants["int8"], int8_how = _stage(root / "onnx-int8-sym", quantize, onnx, int8_options)
    notes = {"fp32": how, "fp16": fp16_how, "int8": int8_how}
    for precision, parent in onnx_variants.items():
        label = f"TensorRT {precision.upper()}" + (" (Q/DQ)" if precision == "int8" else "")
        if parent is None:
            rows.append({"model": name, "variant": label, "artifact": None, "note": notes[precision]})
            continue
        options = CompileOptions(target="tensorrt", max_batch=max_batch)
        engine, how = _stage(root / f"trt-{precision}", compile, parent, options)
        rows.append({"model": name, "variant": label, "artifact": engine, "note": how})
    options = CompileOptions(target="aoti", device="cuda", max_batch=max_batch)
    engine, how = _stage(root / "aoti-cuda", compile, ckpt, options)
    rows.append({"model": name, "variant": "AOTInductor CUDA", "artifact": engine, "note": how})
    return rows


def _validation(artifact: Artifact | None) -> dict[str, Any]:
    if artifact is None or artifact.kind != "engine":
        return {}
    v = artifact.manifest["validation"]
    return {"max_abs_diff": v["max_abs_diff"], "min_cosine": v["min_cosine"], "top1": v["label_agreement"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", help="checkpoint artifacts or registered model names")
    parser.add_argument("--out", default="runs/gpu-check")
    parser.add_argument("--duration", type=float, default=5.0, help="timed seconds per variant")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="engines accept batches 1..this")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sources = (
        args.sources or [s for s in DEFAULT_SOURCES if Path(s, "manifest.json").is_file()] or ["efficientnet-lite0"]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for source in sources for row in variants_for(source, out, args.max_batch)]
    built = [r for r in rows if r["artifact"] is not None]
    by_path: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r["model"] for r in built):
        paths = [r["artifact"].path for r in built if r["model"] == model]
        options = BenchOptions(batch_size=args.batch, duration=args.duration, rounds=args.rounds, warmup=20)
        report = bench(paths, options)
        by_path.update({r["artifact"]: r for r in report["results"]})
        environment = report["environment"]

    columns = ["model", "variant", "status", "vs reference: max diff / min cosine / top-1", "accuracy", "p50 ms"]
    lines = ["| " + " | ".join(columns + ["p90 ms", "per s"]) + " |", "|---" * 8 + "|"]
    record = []
    for r in rows:
        art = r["artifact"]
        timing = by_path.get(str(art.path), {}) if art is not None else {}
        check = _validation(art)
        accuracy = art.metrics.get("accuracy") if art is not None else None
        status = "ok" if art is not None else "not built: " + r.get("note", "")[:160].replace("|", "/")
        agreement = f"{check['max_abs_diff']:.2e} / {check['min_cosine']:.5f} / {check['top1']:.3f}" if check else ""
        shown = [
            f"{timing[k]:.{d}f}" if k in timing else ""
            for k, d in (("p50_ms", 3), ("p90_ms", 3), ("throughput_per_s", 0))
        ]
        lines.append(
            f"| {r['model']} | {r['variant']} | {status} | {agreement} | "
            f"{'' if accuracy is None else f'{accuracy:.4f}'} | {' | '.join(shown)} |"
        )
        record.append(
            {
                "model": r["model"],
                "variant": r["variant"],
                "artifact": str(art.path) if art is not None else None,
                "note": r.get("note"),
                "validation": check,
                "accuracy": accuracy,
                "timing": {k: timing.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "throughput_per_s", "cv")},
                "backend": timing.get("backend"),
            }
        )
    gpus = ", ".join(f"{g['name']} (driver {g['driver']}, cc {g['compute_capability']})" for g in environment["gpus"])
    packages = environment["packages"]
    trt_version = next((packages[k] for k in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13") if k in packages), "absent")
    summary = (
        f"batch {args.batch}, {args.duration:g} s per variant over {args.rounds} interleaved rounds, each variant "
        f"in its own process; GPU: {gpus or 'none'}; CPU: {environment['cpu']} ({environment['cpu_count']} cores); "
        f"torch {packages.get('torch')}, onnxruntime {packages.get('onnxruntime')}, "
        f"tensorrt {trt_version}"
    )
    text = "\n".join(lines) + "\n\n" + summary + "\n"
    print(text)
    (out / "gpu-check.md").write_text(text)
    (out / "gpu-check.json").write_text(json.dumps({"rows": record, "environment": environment}, indent=2) + "\n")


if __name__ == "__main__":
    main()
