"""Options shared by several commands, and output helpers."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import click

out_option = click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Artifact directory to create (must not exist or be empty).",
)
force_option = click.option("--force", is_flag=True, help="Replace --out if it exists and is not empty.")
profile_option = click.option(
    "--profile",
    default=None,
    metavar="NAME|FILE",
    help="Device profile (see 'edgeptm profiles list'); explicit options override it.",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Intra-op threads (default: the profile's, else the runtime's).",
)


max_length_option = click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=None,
    help="Text: serve texts up to this many tokens, up to the encoder's limit (512 for BERT) [default: the "
    "checkpoint's, as fine-tuned]; the export is validated and scored at it.",
)


def options(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def echo_perplexity(metrics: dict[str, Any], missing: str) -> None:
    """A generator artifact's perplexity against its parent's, or ``missing`` when not measured."""
    if metrics.get("perplexity") is None:
        click.echo(missing)
        return
    click.echo(
        f"perplexity {metrics['perplexity']:.3f} (parent {metrics['parent_perplexity']:.3f}, "
        f"{metrics['perplexity_increase_pct']:+.2f}%) on {metrics['val_tokens']} tokens"
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (markdown-compatible pipes), numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) and rows for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "| " + " | ".join(parts) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
