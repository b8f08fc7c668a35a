from __future__ import annotations

import click

from edgeptm.cli.common import force_option, options, out_option, profile_option


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        found = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: a comma-separated list of thread counts, e.g. 1,2") from None
    if not found or min(found) < 1:
        raise click.BadParameter(f"{value!r}: thread counts are >= 1")
    return found


@click.command(name="optimize")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    required=True,
    help="Accuracy points a candidate may lose against the FP32 export (1.0 = 1%).",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Time budget: no build starts once what is left is needed to time the built candidates.",
)
@click.option("--calib", type=click.Path(exists=True), default=None, help="INT8 calibration inputs.")
@click.option(
    "--threads", callback=_ints, default=None, help="Thread counts to time each candidate at, e.g. 1,2 [default: "
    "the profile's]."
)  # fmt: skip
@click.option(
    "--duration", type=click.FloatRange(min=0.5), default=3.0, show_default=True, help="Seconds timed per candidate."
)
@click.option("--recipes", default=None, help="Only these recipes (comma-separated names, as the report lists them).")
@options(profile_option, out_option, force_option)
def command(
    checkpoint: str,
    max_accuracy_drop: float,
    max_minutes: float | None,
    calib: str | None,
    threads: list[int] | None,
    duration: float,
    recipes: str | None,
    profile: str | None,
    out: str,
    force: bool,
) -> None:
    """Build every recipe the profile's device can run from CHECKPOINT, validate and time each, and keep
    the fastest within --max-accuracy-drop of the FP32 export.

    Recipes: ONNX Runtime FP32, dynamic and static INT8, static INT8 on every op type with the automatic
    fallback, and the builds each compile target that serves the device offers (precisions, static or dynamic
    shapes; 'edgeptm compile --help' lists the targets). Each is built by its own edgeptm command in a child
    process (a failure is a row with its reason), timed by the bench harness (each in its own process), and
    reported in
    OUT/optimize-report.{json,md,html} with the Pareto front of accuracy against p50 latency.
    """
    from edgeptm.optimize import REPORT_NAME, OptimizeOptions, optimize

    names = [r.strip() for r in recipes.split(",")] if recipes else None
    report = optimize(
        checkpoint,
        out,
        OptimizeOptions(
            profile=profile,
            max_accuracy_drop=max_accuracy_drop,
            max_minutes=max_minutes,
            calib=calib,
            threads=threads,
            duration=duration,
            recipes=names,
        ),
        force=force,
    )
    from edgeptm.optimize import to_markdown

    click.echo(to_markdown(report))
    click.echo(f"report: {out}/{REPORT_NAME}.json, .md, .html")
    if report["chosen"] is None:
        raise click.ClickException("no candidate was timed within the accuracy budget (see the report)")
