from __future__ import annotations

import click

from edgeptm.cli.common import force_option, max_length_option, options, out_option


@click.command(name="build")
@click.argument("checkpoint", type=click.Path())
@click.option("--profile", required=True, help="Device profile: a name from 'edgeptm profiles list', or a .yaml path.")
@click.option(
    "--calib",
    type=click.Path(exists=True),
    default=None,
    help="Calibration inputs for static INT8 and for the INT8 a target's compiler calibrates [default: the "
    "checkpoint's training sample].",
)
@click.option("--val", type=click.Path(exists=True), default=None, help="Labelled data to score every variant on.")
@max_length_option
@click.option("--bench/--no-bench", default=True, show_default=True, help="Time every variant that runs here.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Bench: seconds per variant.")
@options(out_option, force_option)
def command(checkpoint: str, out: str, force: bool, **kwargs) -> None:
    """Export, quantize, compile and bench CHECKPOINT for one device profile; one report.

    \b
    Every stage uses the profile's settings (opset, precision, shapes, workspace, DLA, threads).
    A stage whose runtime this machine lacks (a GPU compiler without a GPU) is skipped, and the
    report gives the command that runs it on the device; an engine that fails once built fails
    the build. Writes OUT/onnx, OUT/<quantize mode>, OUT/engine and OUT/build-report.{json,md}.
    """
    from edgeptm.build import BuildOptions, build, markdown

    report = build(checkpoint, out, BuildOptions(**kwargs), force=force)
    click.echo(markdown(report).rstrip())
    click.echo(f"report: {report['out']}/build-report.json")
