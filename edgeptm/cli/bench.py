from __future__ import annotations

import click

from edgeptm.artifacts import write_json_atomic
from edgeptm.benchmarking.compare import METRICS
from edgeptm.cli.common import profile_option, table, threads_option


def format_report(report: dict) -> str:
    from edgeptm.benchmarking import speedups

    results = report["results"]
    latency = [
        [
            r["artifact"],
            r["backend"],
            r["precision"],
            r["size_mb"],
            r["accuracy"],
            r["p50_ms"],
            r["p90_ms"],
            r["p99_ms"],
            f"{r['mean_ms']:.2f}±{r['std_ms']:.2f}",
            r["throughput_per_s"],
            f"{s:.2f}x",
        ]
        for r, s in zip(results, speedups(results))
    ]
    cold = [
        [
            r["artifact"],
            r["load_s"],
            r["first_inference_ms"],
            f"{r['warmup_runs']}{'' if r['warmup_settled'] else ' (unsettled)'}",
            r["peak_rss_mb"],
        ]
        for r in results
    ]
    s = report["settings"]
    seq = f", seq {s['seq_len']}" if any(r.get("seq_len") for r in results) else ""  # text artifacts only
    lines = [
        f"batch {s['batch_size']}{seq}, threads {s['threads'] or 'runtime default'}",
        f"timed: {report['timed']}",
        f"method: {report['method']}",
        table(
            [
                "artifact",
                "backend",
                "precision",
                "size MB",
                "accuracy",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "mean±std ms",
                "samples/s",
                "speedup",
            ],
            latency,
        ),
        "",
        table(["artifact", "load s", "first inference ms", "warm-up runs", "peak RSS MB (own process)"], cold),
    ]
    lines += [f"warning: {r['artifact']}: {w}" for r in results for w in r["warnings"]]
    return "\n".join(lines)


class BenchGroup(click.Group):
    """`edgeptm bench ARTIFACT...` runs a benchmark; `edgeptm bench compare OLD NEW` compares two reports."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(name="bench", cls=BenchGroup)
def command() -> None:
    """Benchmark artifacts (the default: 'edgeptm bench ARTIFACT...'), or compare two reports."""


@command.command(name="run")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: profile's, else 1]")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="[default: profile's, else 128]")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Timed runs per artifact [default: 100].")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Untimed runs first [default: 10].")
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True, help="Interleaved rounds.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of timed runs per artifact (split over the rounds) instead of --iterations.",
)
@click.option("--end-to-end", is_flag=True, help="Time tokenization + run + softmax instead of model compute only.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@threads_option
@profile_option
def run(artifacts: tuple[str, ...], json_path: str | None, **kwargs) -> None:
    """Time ARTIFACTS side by side: PyTorch eager for checkpoints, ONNX Runtime for ONNX."""
    from edgeptm.benchmarking import BenchOptions, bench

    report = bench(list(artifacts), BenchOptions(**kwargs))
    click.echo(format_report(report))
    if json_path:
        write_json_atomic(json_path, report)
        click.echo(f"report: {json_path}")


@command.command(name="compare")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=0.10,
    show_default=True,
    help="A variant slower by more than this fraction is a regression (exit code 1).",
)
@click.option("--metric", type=click.Choice(list(METRICS)), default="p50_ms", show_default=True)
def compare_command(old: str, new: str, threshold: float, metric: str) -> None:
    """Compare two 'bench --json' reports variant by variant; exit 1 on a regression (for CI)."""
    from edgeptm.benchmarking.compare import compare, read_report
    from edgeptm.errors import BenchError

    result = compare(read_report(old), read_report(new), threshold, metric)
    rows = [
        [
            r["variant"],
            r["backend"],
            r["batch_size"],
            r["seq_len"],
            r["threads"],
            r["old"],
            r["new"],
            None if r["ratio"] is None else f"{r['ratio']:.3f}",
            r["status"],
        ]
        for r in result["rows"]
    ]
    click.echo(
        table(
            ["variant", "backend", "batch", "seq", "threads", f"old {metric}", f"new {metric}", "new/old", "status"],
            rows,
        )
    )
    for note in result["notes"]:
        click.echo(f"note: {note}")
    if result["regressions"]:
        names = ", ".join(f"{r['variant']} ({r['ratio']:.2f}x)" for r in result["regressions"])
        raise BenchError(f"{len(result['regressions'])} regression(s) beyond {threshold:.0%} in {metric}: {names}")
