from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

import click

from edgeptm import targets
from edgeptm.cli.common import echo_perplexity, force_option, options, out_option, profile_option


def _quantizing() -> str:
    return "/".join(t.name for t in targets.TARGETS.values() if t.precisions)


def _calibrating() -> str:
    return "/".join(t.name for t in targets.TARGETS.values() if t.default_calib_samples is not None)


def _precision_help() -> str:
    said = "; ".join(f"{t.name}: {', '.join(t.precisions)}" for t in targets.TARGETS.values() if t.precisions)
    return f"{said} [default: the profile's, else fp32]."


def target_option_decorators() -> list[Callable[[Any], Any]]:
    """One flag per target option (``--workspace-mb``, ``--device``, ...), from the targets' options
    dataclasses: the registry decides what 'compile' accepts. Unset flags are None (the profile's
    value or the target's default applies); a flag the chosen target does not own is refused."""
    decorators = []
    for key, owners in targets.option_keys().items():
        field = next(f for f in dataclasses.fields(owners[0].options) if f.name == key)
        hint = typing.get_type_hints(owners[0].options)[key]
        kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        meta = field.metadata
        flag = f"--{key.replace('_', '-')}"
        names = "/".join(t.name for t in owners)
        default = "" if field.default is None else f" [default: {field.default}]"
        help_text = f"{names}: {meta.get('help', '')}{default if kind is not bool else ''}."
        if kind is bool:
            decorators.append(click.option(f"{flag}/--no-{flag[2:]}", key, default=None, help=help_text))
            continue
        choices = sorted({c for t in owners for c in (_field(t, key).metadata.get("choices") or ())})
        if choices:
            kind = click.Choice(choices)
        elif meta.get("path"):
            kind = click.Path(dir_okay=False)
        elif kind is int:
            kind = click.IntRange(min=meta.get("low"), max=meta.get("high"))
        decorators.append(click.option(flag, key, type=kind, default=None, help=help_text))
    return decorators


def _field(target: targets.Target, key: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(target.options) if f.name == key)


def _with_target_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(target_option_decorators()):
        function = decorator(function)
    return function


def _doc() -> str:
    import textwrap

    paragraphs = "\n".join(
        textwrap.fill(t.help, 96, initial_indent="", subsequent_indent="  ") for t in targets.TARGETS.values()
    )
    return (
        "Compile SOURCE into an engine for one runtime, validated before it is written.\n\n\b\n"
        f"{paragraphs}\n\nPrecisions a target builds itself (int8, bf16) are scored on the validation split "
        "the source carries and held to --max-accuracy-drop."
    )


@click.command(name="compile", help=_doc())
@click.argument("source", type=click.Path())
@click.option(
    "--target",
    type=click.Choice(list(targets.names())),
    default=None,
    help=f"Runtime to compile for [default: the profile's, else {targets.DEFAULT}].",
)
@click.option(
    "--precision",
    type=click.Choice(list(dict.fromkeys(p for t in targets.TARGETS.values() for p in t.precisions))),
    default=None,
    help=_precision_help(),
)
@click.option(
    "--calib",
    type=click.Path(exists=True),
    default=None,
    help=f"{_calibrating()} int8: calibration data (images: a folder or a path,label list; text: a file with a "
    "'text' column) [default: the training sample the artifact carries].",
)
@click.option(
    "--calib-samples", type=click.IntRange(min=1), default=None, help=f"{_calibrating()} int8: calibration inputs."
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help=f"{_quantizing()} int8 or bf16: write nothing if accuracy on the carried validation split drops more "
    "than this many points [default: the profile's quantize.max_accuracy_drop].",
)
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Largest batch accepted [default: 32].")
@click.option(
    "--max-seq-len", type=click.IntRange(min=1), default=None, help="Text: longest sequence [default: max length]."
)
@click.option(
    "--shapes",
    multiple=True,
    metavar="NAME:MIN,OPT,MAX",
    help="Shape range of one input, e.g. input_ids:1x1,1x128,8x128 (or NAME:1x128 for a static shape); repeat "
    "per input [default: from --max-batch/--max-seq-len, the profile, then the model].",
)
@_with_target_options
@options(profile_option, out_option, force_option)
def command(source: str, out: str, force: bool, shapes: tuple[str, ...], **kwargs) -> None:
    from edgeptm.compile import COMMON, CompileOptions, compile

    common = {k: v for k, v in kwargs.items() if k in COMMON}
    own = {k: v for k, v in kwargs.items() if k not in COMMON and v is not None}
    artifact = compile(source, out, CompileOptions(shapes=list(shapes) or None, **common, **own), force=force)
    info, v, m = artifact.manifest["compile"], artifact.manifest["validation"], artifact.metrics
    where, against = targets.get(info["target"]).summary(info)
    seconds = info.get("build_seconds", info.get("compile_seconds"))
    click.echo(f"engine: {artifact.path} ({info['target']}, {where}, {seconds} s)")
    if artifact.task == "text-generation":
        click.echo(
            f"vs {against}: largest logit difference {v['max_abs_logit_diff']:.2e}, greedy tokens agreeing "
            f"{v['greedy_tokens_agreeing']}/{v['greedy_tokens']} on {v['prompts']} prompts ({v['on']})"
        )
        echo_perplexity(m, "perplexity not measured (no validation examples carried)")
        return
    if m.get("accuracy") is not None:
        delta = m.get("accuracy_delta_points")
        accuracy = f"val accuracy {m['accuracy']:.4f}" + (f" ({delta:+.2f} points)" if delta is not None else "")
    else:
        accuracy = "no labelled data"
    click.echo(
        f"vs {against}: max |output diff| {v['max_abs_diff']:.2e}, min cosine {v['min_cosine']:.5f}, top-1 "
        f"agreement {v['label_agreement']:.3f} on {v['samples']} samples; {accuracy}"
    )
