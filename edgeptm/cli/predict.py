from __future__ import annotations

import click

from edgeptm.cli.common import echo_json, threads_option


@click.command(name="predict")
@click.argument("artifact", type=click.Path())
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help='Print [{"label": ..., "score": ...}, ...].')
@click.option("--backend", default=None, help="Runtime [default: by artifact kind: torch or onnxruntime].")
@threads_option
def command(artifact: str, texts: tuple[str, ...], as_json: bool, backend: str | None, threads: int | None) -> None:
    """Classify TEXTS with ARTIFACT (tokenization, inference and softmax included)."""
    import edgeptm

    with edgeptm.load(artifact, backend=backend, threads=threads) as predictor:
        predictions = predictor.predict(list(texts))
    if as_json:
        echo_json([p.as_dict() for p in predictions])
        return
    for text, p in zip(texts, predictions):
        click.echo(f"{p.label}\t{p.score:.4f}\t{text}")
