from __future__ import annotations

import click

from edgeptm.cli.common import force_option, max_length_option, options, out_option, profile_option


@click.command(name="export")
@click.argument("checkpoint", type=click.Path())
@click.option("--opset", type=click.IntRange(7, 23), default=None, help="ONNX opset [default: profile's, else 17].")
@click.option(
    "--optimize/--no-optimize",
    default=None,
    help="Also derive ONNX Runtime's own fused graph (transformer fusions, run by ONNX Runtime only) as "
    "model.onnxruntime.onnx beside the portable model.onnx [default: on]; model.onnx holds standard ONNX "
    "operators either way.",
)
@max_length_option
@click.option("--atol", type=float, default=None, help="Max |logit difference| vs PyTorch [default: the model's].")
@click.option(
    "--val",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Generators: examples (JSONL or text) to measure perplexity on when the checkpoint carries none.",
)
@options(profile_option, out_option, force_option)
def command(checkpoint: str, out: str, force: bool, **kwargs) -> None:
    """Export CHECKPOINT to ONNX (dynamic batch, and sequence for text), validated against PyTorch.

    A generator (causal LM) becomes one decoder graph with its KV cache (prefill and decode), for
    ONNX Runtime; its greedy continuations and perplexity are checked against PyTorch's.

    CHECKPOINT is an artifact directory, or a registered model name (e.g. efficientnet-lite0,
    minilm-l6) to export the pretrained model as-is.

    The artifact's model.onnx holds standard ONNX operators only: every compile target that reads
    ONNX takes it as it is. ONNX Runtime's fused graph, when derived, sits
    beside it and only ONNX Runtime runs it; both are checked against PyTorch.
    """
    from edgeptm.exporter import ExportOptions, export

    artifact = export(checkpoint, out, ExportOptions(**kwargs), force=force)
    v, m, e = artifact.manifest["validation"], artifact.metrics, artifact.manifest["export"]
    if artifact.task == "text-generation":
        click.echo(f"onnx: {artifact.path} ({e['graph']})")
        click.echo(
            f"vs PyTorch on {v['prompts']} prompts ({v['on']}): max |logit diff| {v['max_abs_logit_diff']:.2e} "
            f"(tolerance {v['atol']:g}) over prefill and {v['decode_steps']} decode steps; greedy tokens "
            f"agreeing {v['greedy_tokens_agreeing']}/{v['greedy_tokens']}"
        )
        if m.get("perplexity") is not None:
            click.echo(
                f"perplexity {m['perplexity']:.3f} (PyTorch {m['perplexity_torch']:.3f}) on {m['val_tokens']} tokens"
            )
        return
    fused = e["optimization"].get("fused_operators") or {}
    domains = ", ".join(e.get("operator_domains") or []) or "none"
    click.echo(f"onnx: {artifact.path} (opset {e['opset']}; model.onnx: {domains} operators)")
    lengths = e.get("max_length") or {}
    if lengths.get("served") != lengths.get("checkpoint"):
        click.echo(f"serves texts up to {lengths['served']} tokens (checkpoint: {lengths['checkpoint']})")
    full = v.get("full_length")
    full_check = f", max |diff| {full['max_abs_diff']:.2e} on a {full['tokens']}-token text" if full else ""
    accuracy = f"val accuracy {m['accuracy']:.4f}" if m.get("accuracy") is not None else "no labelled data"
    click.echo(
        f"vs PyTorch: max |output diff| {v['max_abs_diff']:.2e} (tolerance {v['atol']:g}), min cosine "
        f"{v['min_cosine']:.6f}, top-1 agreement {v['label_agreement']:.3f} on {v['samples']} samples"
        f"{full_check}; {accuracy}"
    )
    if fused:  # ONNX Runtime's own graph beside it, checked against PyTorch too
        ops = ", ".join(f"{k} x{n}" for k, n in fused.items())
        click.echo(
            f"onnxruntime graph: {e['optimization']['path']} (fused: {ops}; "
            f"max |output diff| vs PyTorch {v['ort-model']['max_abs_diff']:.2e})"
        )
