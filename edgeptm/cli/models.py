from __future__ import annotations

import click

from edgeptm.cli.common import echo_json, table


@click.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List the model sources edgeptm knows, and whether each loads offline on this machine."""
    from edgeptm.models import list_sources

    rows = list_sources()
    if as_json:
        echo_json(rows)
        return
    click.echo(
        table(
            ["model", "task", "offline here", "note"],
            [[r["name"], r["task"], "yes" if r["offline"] else "no", r["offline_note"]] for r in rows],
        )
    )
    for r in rows:
        click.echo(f"\n{r['name']}: {r['description']} (license: {r['license']})")
