from __future__ import annotations

from pathlib import Path

import click

from edgeptm.cli.common import table, threads_option


@click.command(name="diff")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True, help="Inputs to run both on.")
@click.option(
    "--min-cosine",
    type=click.FloatRange(0, 1),
    default=0.99,
    show_default=True,
    help="A tensor diverges when its cosine with the other graph's falls below this.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write every row as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write an HTML report.")
@click.option("--all", "show_all", is_flag=True, help="Print every matched tensor, not the summary.")
@threads_option
def command(
    a: str,
    b: str,
    samples: int,
    min_cosine: float,
    json_path: str | None,
    html_path: str | None,
    show_all: bool,
    threads: int | None,
) -> None:
    """Run artifacts A and B on the same inputs and compare them tensor by tensor along the graph.

    Two ONNX artifacts (FP32 against INT8 or FP16, an edit against the original) are compared on every
    float tensor they share by name: cosine, max and mean difference, relative error, and what each node
    adds itself; the first tensor whose cosine falls below --min-cosine is where they part. An ONNX
    artifact A against an engine compiled from it whose runtime exposes its intermediates under the ONNX
    names is compared the same way. Other pairs (a checkpoint, other engines, an engine first) are
    compared on their outputs.
    """
    from edgeptm.artifacts import check_output_paths, write_json_atomic
    from edgeptm.layerwise import diff_artifacts, diff_html

    outputs = [p for p in (json_path, html_path) if p]
    check_output_paths(outputs, "--json/--html", inputs=[a, b])
    report = diff_artifacts(a, b, samples, min_cosine, threads)
    click.echo(f"{report.samples} inputs ({report.inputs}); {len(report.tensors)} tensors matched")
    if report.note:
        click.echo(report.note)
    first = report.first
    if report.layerwise:
        if first is None:
            click.echo(f"no tensor diverges: every matched cosine >= {min_cosine:g}")
        else:
            click.echo(
                f"first divergence: node {first.node} ({first.op_type}), tensor {first.name}: "
                f"cosine {first.cosine:.5f}, max |diff| {first.max_abs:.4g}, relative error {first.rel_err:.4g}"
            )
    headers = ["#", "node", "op", "tensor", "cosine", "max |diff|", "mean |diff|", "rel err", "added"]

    def rows(diffs):
        return [
            [d.index, _short(d.node), d.op_type, _short(d.name), f"{d.cosine:.5f}", f"{d.max_abs:.4g}",
             f"{d.mean_abs:.4g}", f"{d.rel_err:.4g}", f"{d.introduced:+.4g}"]
            for d in diffs
        ]  # fmt: skip

    if show_all:
        click.echo(table(headers, rows(report.tensors)))
    elif report.layerwise:
        click.echo("largest steps (the error a node adds to what reached it):")
        click.echo(table(headers, rows(report.largest_steps())))
    click.echo("outputs:")
    click.echo(table(headers, rows(report.outputs)))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_path, report.as_dict())
        click.echo(f"json: {json_path}")
    if html_path:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(diff_html(report), encoding="utf-8")
        click.echo(f"html: {html_path}")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]
