from __future__ import annotations

import os

import click

from edgeptm.cli.common import force_option, options, out_option, threads_option


@click.command(name="finetune")
@click.option("--model", required=True, help="minilm-l6, or hf:<dir-or-id> (see 'edgeptm models').")
@click.option(
    "--train",
    required=True,
    type=click.Path(dir_okay=False),
    help="Labelled training data (.csv, .tsv, .jsonl or a .json array).",
)
@click.option(
    "--val",
    type=click.Path(dir_okay=False),
    default=None,
    help="Validation data; default: a seeded 10% split of --train.",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate [default: 5e-5, or 1e-3 with --freeze-backbone].")
@click.option(
    "--max-length", type=int, default=128, show_default=True, help="Tokens per text (longer ones are truncated)."
)
@click.option("--freeze-backbone", is_flag=True, help="Train the head only, on the encoder's own pooling.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--train-limit", type=int, default=None, help="Use a seeded subset of N training rows.")
@click.option(
    "--checkpoint-every", type=int, default=200, show_default=True, help="Steps between resumable checkpoints."
)
@options(threads_option, out_option, force_option)
def command(out: str, force: bool, **kwargs) -> None:
    """Fine-tune a pretrained text model for classification; writes a checkpoint artifact.

    \b
    Several processes (data parallel, CPU/gloo): torchrun --nproc-per-node N -m edgeptm.cli finetune ...
    --batch-size stays the global batch; each process takes its share.
    """
    from edgeptm.finetuning import FinetuneOptions, finetune

    artifact = finetune(FinetuneOptions(**kwargs), out, force=force)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return
    m = artifact.metrics
    click.echo(f"checkpoint: {artifact.path}")
    click.echo(
        f"val accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['val_samples']} samples "
        f"({artifact.manifest['training']['validation']})"
    )
