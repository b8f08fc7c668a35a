"""The ``edgeptm`` command: a click group whose subcommands load on first use.

The CLI only parses options, calls the library and prints. An EdgeptmError becomes one line on
stderr and exit code 1; click's usage errors exit with 2.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

from edgeptm import __version__
from edgeptm.environment import silence_known_warnings
from edgeptm.errors import EdgeptmError

COMMANDS = {
    "models": ("edgeptm.cli.models", "List the model sources edgeptm knows, and which load offline here."),
    "finetune": ("edgeptm.cli.finetune", "Fine-tune a pretrained model on labelled texts or images."),
    "export": ("edgeptm.cli.export", "Export a checkpoint to ONNX, validated against PyTorch."),
    "quantize": ("edgeptm.cli.quantize", "Quantize an ONNX artifact and measure the accuracy cost."),
    "compile": ("edgeptm.cli.compile", "Compile into an engine for one target runtime, validated."),
    "build": ("edgeptm.cli.build", "Export, quantize, compile and bench a checkpoint for one device profile."),
    "optimize": (
        "edgeptm.cli.optimize",
        "Try every recipe a device runs; keep the fastest within an accuracy budget.",
    ),
    "bench": ("edgeptm.cli.bench", "Time artifacts side by side (each in its own process)."),
    "diff": ("edgeptm.cli.diff", "Compare two artifacts tensor by tensor; name where they diverge."),
    "predict": ("edgeptm.cli.predict", "Run an artifact on texts or image files: top labels and scores."),
    "profiles": ("edgeptm.cli.profiles", "List and show device profiles (export_profiles/*.yaml)."),
    "verify": ("edgeptm.cli.trust:verify_command", "Check an artifact (schema, paths, checksums); print its digest."),
    "trust": ("edgeptm.cli.trust:trust_command", "Let an artifact's native code (compiled engines) load here."),
    "demo": ("edgeptm.cli.demo", "Fine-tune, export, quantize and benchmark MiniLM on Rotten Tomatoes."),
    "demo-vision": (
        "edgeptm.cli.demo:vision_command",
        "The same for EfficientNet-Lite0 on Fashion-MNIST (static INT8, FP16).",
    ),
}


class CommandError(click.ClickException):
    exit_code = 1

    def show(self, file=None) -> None:  # one line, no "Usage:" block: this is not a usage error
        click.echo(f"edgeptm: error: {self.format_message()}", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr or "command")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above: listing commands must not import torch.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeptmError as exc:
            raise CommandError(" ".join(str(exc).split())) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeptm")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(quiet: bool, verbose: bool) -> None:
    """edgeptm: take a pretrained model to a device.

    \b
    A typical path:
      edgeptm finetune --model minilm-l6 --train train.csv --out runs/ckpt
      edgeptm export runs/ckpt --out runs/onnx
      edgeptm quantize runs/onnx --mode dynamic-int8 --max-accuracy-drop 1.0 --out runs/int8
      edgeptm bench runs/ckpt runs/onnx runs/int8 --threads 2
      edgeptm predict runs/int8 "a gripping, beautifully shot film"

    \b
    Images: the same commands, e.g.
      edgeptm finetune --model efficientnet-lite0 --train photos/ --out runs/img
      edgeptm quantize runs/img-onnx --mode static-int8 --calib-method entropy --out runs/img-int8
      edgeptm predict runs/img-int8 cat.jpg --top-k 3
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="edgeptm: %(message)s")
    logging.getLogger("edgeptm").setLevel(level)
    silence_known_warnings()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    cli(prog_name="edgeptm")
