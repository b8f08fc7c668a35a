from __future__ import annotations

import click

from edgeptm.cli.common import force_option, options, out_option, profile_option


@click.command(name="compile")
@click.argument("source", type=click.Path())
@click.option(
    "--target", type=click.Choice(["aoti"]), default="aoti", show_default=True, help="Runtime to compile for."
)
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="aoti: where it will run."
)
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True, help="Largest batch accepted.")
@click.option(
    "--max-seq-len", type=click.IntRange(min=1), default=None, help="Text: longest sequence [default: max length]."
)
@options(profile_option, out_option, force_option)
def command(source: str, out: str, force: bool, **kwargs) -> None:
    """Compile SOURCE into an engine for one runtime, validated against PyTorch.

    \b
    --target aoti: torch.export + AOTInductor -> a .pt2 package (CPU C++/OpenMP kernels, or CUDA),
    dynamic batch (and sequence) axes; SOURCE is a checkpoint artifact or a registered model name.
    The package loads in any process with the same torch version (the manifest records it).
    """
    from edgeptm.compile import CompileOptions, compile

    artifact = compile(source, out, CompileOptions(**kwargs), force=force)
    info, v, m = artifact.manifest["compile"], artifact.manifest["validation"], artifact.metrics
    click.echo(
        f"engine: {artifact.path} ({info['target']}, {info['device']}, torch {info['torch']}, "
        f"{info['compile_seconds']} s)"
    )
    accuracy = f"val accuracy {m['accuracy']:.4f}" if m.get("accuracy") is not None else "no labelled data"
    click.echo(
        f"vs PyTorch: max |output diff| {v['max_abs_diff']:.2e} (tolerance {v['atol']:g}), top-1 agreement "
        f"{v['label_agreement']:.3f} on {v['samples']} samples; {accuracy}"
    )
