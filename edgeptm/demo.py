"""The embedded demo: MiniLM fine-tuned on Rotten Tomatoes, exported, quantized and benchmarked.

Each stage is the same public function a user calls; the demo only chains them and collects one
table: variant | size MB | val accuracy | p50 ms | p90 ms | speedup vs PyTorch FP32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm.benchmarking import BenchOptions, bench, speedups
from edgeptm.data.demo import rotten_tomatoes
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
    ckpt = finetune(
        FinetuneOptions(
            model=opts.model,
            train=str(data.train),
            val=str(data.val),
            epochs=opts.epochs,
            max_length=opts.max_length,
            train_limit=opts.train_limit,
            threads=opts.threads,
        ),
        root / "checkpoint",
        force=opts.force,
    )
    onnx = export(ckpt, root / "onnx-fp32", ExportOptions(profile=opts.profile), force=opts.force)
    int8 = quantize(
        onnx,
        root / "onnx-int8",
        QuantizeOptions(mode="dynamic-int8", profile=opts.profile, max_accuracy_drop=opts.max_accuracy_drop),
        force=opts.force,
    )
    report = bench(
        [ckpt.path, onnx.path, int8.path],
        BenchOptions(
            batch_size=1,
            seq_len=opts.seq_len,
            threads=opts.threads,
            iterations=opts.iterations,
            warmup=20,
            profile=opts.profile,
        ),
    )
    names = ["PyTorch FP32 (eager)", "ONNX Runtime FP32", "ONNX Runtime INT8 (dynamic)"]
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
    return {
        "data": data.description,
        "n_train": opts.train_limit or data.n_train,
        "n_val": data.n_val,
        "subset": bool(opts.train_limit),
        "report": report,
        "rows": rows,
    }
