from __future__ import annotations

import os

import click

from edgeptm.cli.common import force_option, options, out_option, threads_option


@click.command(name="finetune")
@click.option(
    "--model",
    required=True,
    help="minilm-l6, smollm2-135m, hf:<dir-or-id>, efficientnet-lite0, torchvision:<name>, timm:<name> "
    "(see 'edgeptm models').",
)
@click.option(
    "--train",
    required=True,
    type=click.Path(),
    help="Labelled data: text as .csv/.tsv/.jsonl/.json; images as a folder with one sub-folder per class, "
    "or a .csv of path,label. Generators: JSONL of prompt/completion, messages or text rows, or plain text.",
)
@click.option(
    "--val",
    type=click.Path(),
    default=None,
    help="Validation data, same forms; default: a seeded 10% split of --train.",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--epochs",
    callback=lambda ctx, param, value: value if value == "auto" else _int(value, "--epochs"),
    default="3",
    show_default=True,
    help="Epochs, or 'auto': until the --select-metric stops improving (--patience, at most --max-epochs). "
    "The best epoch's weights are kept either way.",
)
@click.option(
    "--batch-size", type=int, default=None, help="Global batch [default: 16 below 1,000 training rows, else 32]."
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="The pretrained body's learning rate (its top layer) [default: 1e-4; 1e-3 with --freeze-backbone].",
)
@click.option("--head-lr", type=float, default=None, help="The new head's learning rate [default: 10x --lr].")
@click.option(
    "--layer-decay",
    type=float,
    default=None,
    help="Text: each encoder layer below the top learns this times slower [default: 0.9; 1 = flat].",
)
@click.option(
    "--select-metric",
    type=click.Choice(["auto", "accuracy", "macro_f1"]),
    default="auto",
    show_default=True,
    help="Which epoch to keep: auto = macro-F1 when training labels are imbalanced, accuracy otherwise.",
)
@click.option("--patience", type=int, default=2, show_default=True, help="--epochs auto: epochs without improvement.")
@click.option("--max-epochs", type=int, default=20, show_default=True, help="--epochs auto: at most this many.")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "finetune", "probe"]),
    default="auto",
    show_default=True,
    help="A linear probe (logistic regression on frozen pretrained features, seconds) is always scored as the "
    "baseline; auto keeps whichever is better on validation, probe skips fine-tuning.",
)
@click.option(
    "--head-init",
    type=click.Choice(["probe", "random"]),
    default="probe",
    show_default=True,
    help="The new head starts as the linear probe (then everything fine-tunes: LP-FT), or random.",
)
@click.option(
    "--class-weights",
    type=click.Choice(["none", "balanced"]),
    default="none",
    show_default=True,
    help="balanced: the loss weighs each class by the inverse of its share (for skewed labels).",
)
@click.option(
    "--max-length",
    type=int,
    default=None,
    help="Tokens per text or example (longer ones are cut) [default: 128; generators 512].",
)
@click.option(
    "--task",
    type=click.Choice(["text-classification", "image-classification", "text-generation"]),
    default=None,
    help="What to train [default: the model's own: text-generation for a causal LM such as smollm2-135m].",
)
@click.option("--full", is_flag=True, help="Generators: train every weight instead of LoRA adapters.")
@click.option("--lora-rank", type=int, default=16, show_default=True, help="Generators: LoRA rank.")
@click.option("--lora-alpha", type=int, default=None, help="Generators: LoRA alpha [default: 2 x rank].")
@click.option("--lora-dropout", type=float, default=0.05, show_default=True, help="Generators: LoRA dropout.")
@click.option(
    "--lora-targets",
    default=None,
    help="Generators: comma-separated module names to adapt [default: every attention and MLP projection].",
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
@click.option(
    "--no-augment",
    "no_augment",
    is_flag=True,
    help="Images: no augmentation (random resized crops, flips, colour jitter on colour images).",
)
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
    """Fine-tune a pretrained model on your data; writes a checkpoint artifact.

    Classifiers (text, images) train a new head on labelled data; generators (causal LMs) train LoRA
    adapters (or every weight with --full) on prompt/completion pairs, with the loss on completions.

    \b
    Several processes (data parallel, CPU/gloo): torchrun --nproc-per-node N -m edgeptm.cli finetune ...
    --batch-size stays the global batch; each process takes its share.
    """
    from edgeptm.finetuning import FinetuneOptions, finetune

    opts = FinetuneOptions(**kwargs, pretrained=not no_pretrained, augment=not no_augment)
    artifact = finetune(opts, out, force=force)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return
    click.echo(f"checkpoint: {artifact.path}")
    if artifact.task == "text-generation":
        m = artifact.metrics
        click.echo(
            f"validation perplexity {m['perplexity']:.3f} (base model {m['perplexity_before']:.3f}) on "
            f"{m['val_tokens']} completion tokens ({artifact.manifest['training']['validation']})"
        )
        return
    for line in summary_lines(artifact):
        click.echo(line)


def _int(value: str, option: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a number or 'auto'", param_hint=option) from None


def summary_lines(artifact) -> list[str]:
    """What the validation split says about the kept model, honestly: the interval of its
    accuracy, the per-class figures, the confusion matrix, the baseline, and any collapse."""
    from edgeptm.cli.common import table

    m, training = artifact.metrics, artifact.manifest["training"]
    low, high = m.get("accuracy_ci95") or (None, None)
    interval = f" (95% interval {low:.3f}-{high:.3f})" if low is not None else ""
    lines = [
        f"val accuracy {m['accuracy']:.4f}{interval}, macro-F1 {m['macro_f1']:.4f} on {m['val_samples']} samples "
        f"({training['validation']})"
    ]
    selection, probe = training.get("selection") or {}, training.get("probe")
    if selection:
        lines.append(f"kept: {selection['kept']}: {selection['why']}")
    if probe and selection.get("kept") != "probe":
        lines.append(f"linear probe baseline: accuracy {probe['accuracy']:.4f}, macro-F1 {probe['macro_f1']:.4f}")
    per_class = m.get("per_class") or {}
    if per_class:
        rows = [
            [name, c["precision"], c["recall"], c["f1"], c["support"], c["predicted"]] for name, c in per_class.items()
        ]
        lines.append(table(["label", "precision", "recall", "F1", "support", "predicted"], rows))
    if m.get("confusion") and len(per_class) <= 10:
        names = list(per_class)
        lines.append("confusion (rows: true label, columns: predicted)")
        lines.append(table(["", *names], [[name, *row] for name, row in zip(names, m["confusion"])]))
    lines += [f"warning: {w}" for w in m.get("warnings") or []]
    return lines
