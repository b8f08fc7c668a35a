from __future__ import annotations

from pathlib import Path

import click

from edgeptm.artifacts import write_json_atomic
from edgeptm.benchmarking.compare import METRICS
from edgeptm.cli.common import profile_option, table


def format_report(report: dict) -> str:
    from edgeptm.benchmarking import speedups

    results = report["results"]
    offline = report["settings"].get("scenario") == "offline"
    latency = []
    for r, speedup in zip(results, speedups(results)):
        where = [r.get("variant") or r["artifact"], r.get("backend") or "", r["batch_size"]]
        where += [r.get("seq_len") or r.get("image_size"), r["threads"], r.get("provider") or ""]
        if r.get("status", "ok") != "ok":
            latency.append(where + [f"{r['status']}: {r['reason']}"] + [""] * 8)
            continue
        e2e = (r.get("end_to_end") or {}).get("p50_ms")
        latency.append(
            where
            + [
                r["precision"],
                r["accuracy"],
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["throughput_per_s"],
                e2e,
                r["peak_rss_mb"],
                f"{speedup:.2f}x",
            ]
        )
    s = report["settings"]
    lines = [
        f"scenario {s.get('scenario', 'single-stream')}; timed: {report['timed']}",
        f"method: {report['method']}",
        table(
            ["variant", "backend", "batch", "seq/img", "threads", "provider", "precision", "accuracy", "p50 ms"]
            + ["p90 ms", "p99 ms", "samples/s", "e2e p50 ms", "peak RSS MB", "throughput x" if offline else "speedup"],
            latency,
        ),
    ]
    generation = [r for r in results if r.get("scenario") == "generation" and r.get("status", "ok") == "ok"]
    if generation:
        lines.append("")
        lines.append(
            table(
                ["variant", "precision", "prompt", "new", "threads", "TTFT ms", "decode tok/s", "request p50 ms"]
                + ["perplexity", "size MB", "peak RSS MB"],
                [
                    [
                        r["variant"],
                        r["precision"],
                        r["prompt_len"],
                        r["new_tokens"],
                        r["threads"],
                        r["ttft_ms"],
                        r["decode_tokens_per_s"],
                        r["p50_ms"],
                        r.get("perplexity"),
                        r["size_mb"],
                        r["peak_rss_mb"],
                    ]
                    for r in generation
                ],
            )
        )
    for r in results:
        if r.get("search"):
            tried = ", ".join(
                f"{f['batch_size']}: {f['throughput_per_s']:.0f}/s"
                if "throughput_per_s" in f
                else f"{f['batch_size']}: stop"
                for f in r["search"]
            )
            lines.append(f"offline search {r.get('variant')}: {tried} -> batch {r['batch_size']}")
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    cold = [
        [
            r.get("variant") or r["artifact"],
            r["load_s"],
            r["first_inference_ms"],
            f"{r['warmup_runs']}{'' if r['warmup_settled'] else ' (unsettled)'}",
            r["size_mb"],
        ]
        for r in ok
    ]
    lines += ["", table(["variant", "load s", "first inference ms", "warm-up runs", "size MB"], cold)]
    lines += [f"warning: {r.get('variant') or r['artifact']}: {w}" for r in ok for w in r["warnings"]]
    return "\n".join(lines)


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """'1,8,32' -> [1, 8, 32] (one value is a list of one)."""
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected integers >= 1, got {value!r}")
    return values


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
@click.option("--batch-size", callback=_ints, default=None, help="Batch size, or a list to sweep: 1,8,32 [default: 1].")
@click.option("--seq-len", callback=_ints, default=None, help="Text: sequence length(s), e.g. 64,128 [default: 128].")
@click.option("--image-size", callback=_ints, default=None, help="Images: size(s) to sweep, e.g. 96,224.")
@click.option(
    "--prompt-len",
    callback=_ints,
    default=None,
    help="Generators: prompt tokens, or a list to sweep, e.g. 64,256 [default: 64].",
)
@click.option(
    "--new-tokens",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Generators: tokens generated per request (EOS ignored).",
)
@click.option(
    "--threads", callback=_ints, default=None, help="Intra-op threads, or a list to sweep [default: profile's]."
)
@click.option(
    "--provider",
    default=None,
    help="ONNX Runtime execution provider(s) for ONNX artifacts: cpu,cuda or another the installed "
    "onnxruntime has (missing ones are reported).",
)
@click.option(
    "--scenario",
    type=click.Choice(["single-stream", "offline"]),
    default="single-stream",
    show_default=True,
    help="single-stream: one query at a time (latency); offline: the batch size with the best throughput.",
)
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Timed runs per artifact [default: 100].")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Untimed runs first [default: 10].")
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True, help="Interleaved rounds.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of timed runs per artifact (split over the rounds) instead of --iterations.",
)
@click.option(
    "--end-to-end", is_flag=True, help="Main figure end to end (the end-to-end p50 is always reported beside)."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@click.option(
    "--report",
    "report_stem",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write STEM.json, STEM.csv, STEM.md and STEM.html (one page with plots).",
)
@click.option(
    "--digest",
    "digests",
    multiple=True,
    metavar="SHA256",
    help="Pin an artifact by its digest ('edgeptm verify' prints it); repeat for several. A pinned "
    "engine that holds native code loads without 'edgeptm trust'.",
)
@profile_option
def run(
    artifacts: tuple[str, ...],
    json_path: str | None,
    report_stem: str | None,
    batch_size: list[int] | None,
    seq_len: list[int] | None,
    image_size: list[int] | None,
    threads: list[int] | None,
    provider: str | None,
    prompt_len: list[int] | None,
    **kwargs,
) -> None:
    """Time ARTIFACTS side by side, each in its own process: PyTorch eager for checkpoints, ONNX
    Runtime for ONNX, an engine on its runtime. Lists sweep every combination.

    Generators (causal LMs) are timed per request: time to first token for a --prompt-len prompt,
    decode tokens/s (1000 / the median decode step), the whole request, peak RSS and size."""
    from edgeptm.benchmarking import BenchOptions, bench
    from edgeptm.artifacts import check_output_paths
    from edgeptm.benchmarking.report import report_paths
    from edgeptm.profiles import resolve_profile

    # Refused before anything runs: a report over an input or inside an artifact directory.
    profile = resolve_profile(kwargs.get("profile"))
    inputs = [*(a for a in artifacts if Path(a).exists()), profile and profile.path]  # not registered names
    if json_path:
        check_output_paths([json_path], "--json", inputs)
    if report_stem:
        check_output_paths(report_paths(report_stem), "--report", inputs)
    options = BenchOptions(
        batch_size=batch_size[0] if batch_size and len(batch_size) == 1 else None,
        batch_sizes=batch_size if batch_size and len(batch_size) > 1 else None,
        seq_len=seq_len[0] if seq_len and len(seq_len) == 1 else None,
        seq_lens=seq_len if seq_len and len(seq_len) > 1 else None,
        image_sizes=image_size,
        threads=threads[0] if threads and len(threads) == 1 else None,
        thread_counts=threads if threads and len(threads) > 1 else None,
        providers=[p.strip() for p in provider.split(",")] if provider else None,
        prompt_lens=prompt_len,
        **kwargs,
    )
    report = bench(list(artifacts), options)
    click.echo(format_report(report))
    if json_path:
        write_json_atomic(json_path, report)
        click.echo(f"report: {json_path}")
    if report_stem:
        from edgeptm.benchmarking.report import write_reports

        for path in write_reports(report, report_stem):
            click.echo(f"report: {path}")


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
