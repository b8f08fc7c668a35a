from __future__ import annotations

import click

from edgeptm.cli.common import echo_json, threads_option


@click.command(name="predict")
@click.argument("artifact", type=click.Path())
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Labels per input [default: 1; 5 for ImageNet models]. Generators: sample from the k most likely tokens.",
)
@click.option("--json", "as_json", is_flag=True, help='Print [{"input": ..., "predictions": [{"label", "score"}]}].')
@click.option("--backend", default=None, help="Runtime [default: by artifact kind: torch or onnxruntime].")
@click.option(
    "--digest",
    default=None,
    metavar="SHA256",
    help="Load ARTIFACT only if it has this digest ('edgeptm verify' prints it); a pinned engine that holds "
    "native code loads without 'edgeptm trust'.",
)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True, help="Generators.")
@click.option(
    "--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Generators: 0 = greedy."
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, help="Generators: nucleus sampling.")
@click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True), default=1.0, help="Generators.")
@click.option("--stop", multiple=True, help="Generators: stop at this text (repeatable).")
@click.option("--seed", type=int, default=None, help="Generators: sampling seed.")
@click.option("--raw", is_flag=True, help="Generators: feed the prompt as it is, without the chat template.")
@threads_option
def command(
    artifact: str,
    inputs: tuple[str, ...],
    top_k: int | None,
    as_json: bool,
    backend: str | None,
    digest: str | None,
    threads: int | None,
    **generation,
) -> None:
    """Classify INPUTS (texts, or image files for an image model) with ARTIFACT.

    Preprocessing (tokenization, or decode/resize/crop/normalise), inference and softmax included.
    ARTIFACT may also name a registered model to use it as pretrained: `efficientnet-lite0
    photo.jpg` gives ImageNet labels; `minilm-l6 TEXT...` gives sentence vectors (one text) or
    the cosine similarity of every pair (several); `smollm2-135m "Write a haiku about rain"`
    streams the generator's answer (the chat template applied; --json: text and token counts).
    """
    import edgeptm

    with edgeptm.load(artifact, backend=backend, threads=threads, digest=digest) as predictor:
        if predictor.artifact.task == "text-generation":
            _generate(predictor, " ".join(inputs), as_json, top_k or 0, **generation)
            return
        if predictor.artifact.task == "feature-extraction":
            _embeddings(predictor, list(inputs), as_json)
            return
        top_k = top_k or (5 if len(predictor.labels) >= 100 else 1)
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


def _generate(generator, prompt: str, as_json: bool, top_k: int, raw: bool, **kwargs) -> None:
    """Stream the answer to the terminal as it is generated (--json: one object at the end)."""
    run = dict(kwargs, top_k=top_k, chat=False if raw else None)
    if as_json:
        echo_json({"prompt": prompt, **generator.generate(prompt, **run).as_dict()})
        return
    for piece in generator.stream(prompt, **run):
        click.echo(piece, nl=False)
    click.echo()


def _embeddings(predictor, texts: list[str], as_json: bool) -> None:
    vectors = predictor.embed(texts)
    similarity = predictor.similarity(texts) if len(texts) > 1 else None
    if as_json:
        data = {"texts": texts, "embeddings": vectors.tolist()}
        if similarity is not None:
            data["cosine_similarity"] = similarity.round(6).tolist()
        echo_json(data)
        return
    if similarity is None:
        v = vectors[0]
        head = ", ".join(f"{x:.4f}" for x in v[:8])
        click.echo(f"{len(v)} dims, L2 norm {float((v.astype('float64') ** 2).sum() ** 0.5):.4f}: [{head}, ...]")
        click.echo("(--json prints the whole vector; give several texts for their cosine similarities)")
        return
    from edgeptm.cli.common import table

    names = [f"[{i}]" for i in range(len(texts))]
    for name, text in zip(names, texts):
        click.echo(f"{name} {text}")
    click.echo(table(["cosine", *names], [[n, *[f"{x:.4f}" for x in row]] for n, row in zip(names, similarity)]))
