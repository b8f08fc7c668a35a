from __future__ import annotations

import click

from edgeptm.cli.common import echo_json, threads_option


@click.command(name="predict")
@click.argument("artifact", type=click.Path())
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Labels per input.")
@click.option("--json", "as_json", is_flag=True, help='Print [{"input": ..., "predictions": [{"label", "score"}]}].')
@click.option("--backend", default=None, help="Runtime [default: by artifact kind: torch or onnxruntime].")
@threads_option
def command(
    artifact: str, inputs: tuple[str, ...], top_k: int, as_json: bool, backend: str | None, threads: int | None
) -> None:
    """Classify INPUTS (texts, or image files for an image model) with ARTIFACT.

    Preprocessing (tokenization, or decode/resize/crop/normalise), inference and softmax included.
    """
    import edgeptm

    with edgeptm.load(artifact, backend=backend, threads=threads) as predictor:
        ranked = predictor.top_k(list(inputs), top_k)
    if as_json:
        echo_json([{"input": i, "predictions": [p.as_dict() for p in row]} for i, row in zip(inputs, ranked)])
        return
    for item, row in zip(inputs, ranked):
        if top_k == 1:
            click.echo(f"{row[0].label}\t{row[0].score:.4f}\t{item}")
            continue
        click.echo(item)
        for rank, p in enumerate(row, start=1):
            click.echo(f"  {rank}. {p.label}\t{p.score:.4f}")
