"""The embedded demos, fine-tuned, exported, quantized and benchmarked:
MiniLM on Rotten Tomatoes (text) and EfficientNet-Lite0 on Fashion-MNIST (images).

Each stage is the same public function a user calls; a demo only chains them and collects one
table: variant | size MB | val accuracy | p50 ms | p90 ms | speedup vs PyTorch FP32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm.benchmarking import BenchOptions, bench, speedups
from edgeptm.data.demo import rotten_tomatoes
from edgeptm.data.vision_demo import fashion_mnist
from edgeptm.exporter import ExportOptions, export
from edgeptm.finetuning import FinetuneOptions, finetune
from edgeptm.quantization import QuantizeOptions, quantize

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    out: str = "runs/demo"
    model: str = "minilm-l6"
    epochs: int = 1
    max_length: int = 64  # review sentences: 99.94% fit in 64 tokens (mean 27, longest 78)
    train_limit: int | None = None
    threads: int | None = 2
    iterations: int = 200
    seq_len: int = 128
    max_accuracy_drop: float = 1.0
    profile: str | None = "cpu-x86-avx512"
    force: bool = False


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    root = Path(opts.out)
    data = rotten_tomatoes(fetch=True)
    subset = f", training on a seeded subset of {opts.train_limit}" if opts.train_limit else ""
    log.info("data: %s: %d train / %d validation sentences%s", data.description, data.n_train, data.n_val, subset)
    ckpt, onnx, int8 = _finetune_export_quantize(
        root,
        FinetuneOptions(
            model=opts.model,
            train=str(data.train),
            val=str(data.val),
            epochs=opts.epochs,
            max_length=opts.max_length,
            train_limit=opts.train_limit,
            threads=opts.threads,
        ),
        QuantizeOptions(mode="dynamic-int8", profile=opts.profile, max_accuracy_drop=opts.max_accuracy_drop),
        opts.profile,
        opts.force,
    )
    bench_options = BenchOptions(
        batch_size=1,
        seq_len=opts.seq_len,
        threads=opts.threads,
        iterations=opts.iterations,
        warmup=20,
        profile=opts.profile,
    )
    names = ["PyTorch FP32 (eager)", "ONNX Runtime FP32", "ONNX Runtime INT8 (dynamic)"]
    report, rows = _bench_table([ckpt, onnx, int8], names, bench_options)
    return {
        "data": data.description,
        "n_train": opts.train_limit or data.n_train,
        "n_val": data.n_val,
        "subset": bool(opts.train_limit),
        "report": report,
        "rows": rows,
    }


def _finetune_export_quantize(
    root: Path, finetune_options: FinetuneOptions, quantize_options: QuantizeOptions, profile: str | None, force: bool
) -> tuple[Any, Any, Any]:
    """The demo path: checkpoint/, onnx-fp32/ and onnx-int8/ under ``root``."""
    ckpt = finetune(finetune_options, root / "checkpoint", force=force)
    onnx = export(ckpt, root / "onnx-fp32", ExportOptions(profile=profile), force=force)
    int8 = quantize(onnx, root / "onnx-int8", quantize_options, force=force)
    return ckpt, onnx, int8


def _bench_table(artifacts: list[Any], names: list[str], options: BenchOptions) -> tuple[dict[str, Any], list]:
    report = bench([a.path for a in artifacts], options)
    rows = []
    for name, result, speedup in zip(names, report["results"], speedups(report["results"])):
        rows.append(
            {
                "variant": name,
                "artifact": result["artifact"],
                "size_mb": result["size_mb"],
                "val_accuracy": result["accuracy"],
                "p50_ms": result["p50_ms"],
                "p90_ms": result["p90_ms"],
                "speedup_vs_pytorch": speedup,
            }
        )
    return report, rows


@dataclass
class VisionDemoOptions:
    out: str = "runs/demo-vision"
    model: str = "efficientnet-lite0"
    epochs: int = 1
    # Fashion-MNIST is 28x28: upscaled to 96 the pretrained filters see objects at a scale they know,
    # and one epoch costs ~4x less than at 224 (CPU training, 2 cores).
    image_size: int = 96
    # One epoch over 12,000 images reached 0.876; 30,000 costs ~7 min on 2 cores.
    train_limit: int | None = 30000
    val_limit: int | None = 2000
    threads: int | None = 2
    duration: float = 4.0  # seconds of timed runs per variant: ~1 ms inferences need thousands of runs
    calib_samples: int = 256
    max_accuracy_drop: float = 1.5
    fp16: bool = True
    profile: str | None = "cpu-x86-avx512"
    force: bool = False


def run_vision_demo(opts: VisionDemoOptions) -> dict[str, Any]:
    root = Path(opts.out)
    data = fashion_mnist(fetch=True)
    log.info("data: %s: %d train / %d validation images", data.description, data.n_train, data.n_val)
    ckpt, onnx, int8 = _finetune_export_quantize(
        root,
        FinetuneOptions(
            model=opts.model,
            train=str(data.train),
            val=str(data.val),
            epochs=opts.epochs,
            image_size=opts.image_size,
            train_limit=opts.train_limit,
            val_limit=opts.val_limit,
            threads=opts.threads,
        ),
        QuantizeOptions(
            mode="static-int8",
            calib_samples=opts.calib_samples,
            profile=opts.profile,
            max_accuracy_drop=opts.max_accuracy_drop,
        ),
        opts.profile,
        opts.force,
    )
    artifacts = [ckpt, onnx, int8]
    names = ["PyTorch FP32 (eager)", "ONNX Runtime FP32", "ONNX Runtime INT8 (static QDQ)"]
    if opts.fp16:
        artifacts.append(quantize(onnx, root / "onnx-fp16", QuantizeOptions(mode="fp16"), force=opts.force))
        names.append("ONNX Runtime FP16")
    bench_options = BenchOptions(
        batch_size=1, threads=opts.threads, duration=opts.duration, warmup=50, profile=opts.profile
    )
    report, rows = _bench_table(artifacts, names, bench_options)
    return {
        "data": data.description,
        "n_train": min(opts.train_limit or data.n_train, data.n_train),
        "n_val": min(opts.val_limit or data.n_val, data.n_val),
        "subset": bool(opts.train_limit and opts.train_limit < data.n_train),
        "image_size": opts.image_size,
        "report": report,
        "rows": rows,
    }
