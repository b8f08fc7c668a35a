from __future__ import annotations

import os

import click

from edgeptm.cli.common import force_option, options, out_option, threads_option


@click.command(name="finetune")
@click.option(
    "--model",
    required=True,
    help="minilm-l6, hf:<dir-or-id>, efficientnet-lite0, torchvision:<name>, timm:<name> (see 'edgeptm models').",
)
@click.option(
    "--train",
    required=True,
    type=click.Path(),
    help="Labelled data: text as .csv/.tsv/.jsonl/.json; images as a folder with one sub-folder per class, "
    "or a .csv of path,label.",
)
@click.option(
    "--val",
    type=click.Path(),
    default=None,
    help="Validation data, same forms; default: a seeded 10% split of --train.",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Learning rate [default: text 5e-5, images 1e-3; 1e-3 frozen].",
)
@click.option(
    "--max-length", type=int, default=128, show_default=True, help="Tokens per text (longer ones are truncated)."
)
@click.option("--freeze-backbone", is_flag=True, help="Train the new head only; the pretrained backbone stays fixed.")
@click.option(
    "--image-size", type=int, default=None, help="Images: input side in pixels [default: the model's own, e.g. 224]."
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Images: pretrained weights file (state dict, .pth/.safetensors) for torchvision:/timm: models offline.",
)
@click.option("--no-pretrained", "no_pretrained", is_flag=True, help="Images: start from random weights.")
@click.option("--no-augment", "no_augment", is_flag=True, help="Images: no random horizontal flips in training.")
@click.option("--strict", is_flag=True, help="Images: an unreadable image is an error (default: skipped, counted).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--train-limit", type=int, default=None, help="Use a seeded subset of N training rows.")
@click.option("--val-limit", type=int, default=None, help="Score on a seeded subset of N validation rows.")
@click.option(
    "--checkpoint-every", type=int, default=200, show_default=True, help="Steps between resumable checkpoints."
)
@options(threads_option, out_option, force_option)
def command(out: str, force: bool, no_pretrained: bool, no_augment: bool, **kwargs) -> None:
    """Fine-tune a pretrained text or image model for classification; writes a checkpoint artifact.

    \b
    Several processes (data parallel, CPU/gloo): torchrun --nproc-per-node N -m edgeptm.cli finetune ...
    --batch-size stays the global batch; each process takes its share.
    """
    from edgeptm.finetuning import FinetuneOptions, finetune

    opts = FinetuneOptions(**kwargs, pretrained=not no_pretrained, augment=not no_augment)
    artifact = finetune(opts, out, force=force)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return
    m = artifact.metrics
    click.echo(f"checkpoint: {artifact.path}")
    click.echo(
        f"val accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['val_samples']} samples "
        f"({artifact.manifest['training']['validation']})"
    )
