from __future__ import annotations

import click
import yaml

from edgeptm.cli.common import table


@click.group(name="profiles")
def command() -> None:
    """Device profiles: the settings one device family wants."""


@command.command(name="list")
def list_() -> None:
    """List the shipped profiles."""
    from edgeptm.profiles import list_profiles, profiles_dir

    rows = [
        [p.name, p.device.arch, p.quantize.mode or "by task", p.runtime.threads, p.description] for p in list_profiles()
    ]
    click.echo(table(["profile", "arch", "quantize", "threads", "description"], rows))
    click.echo(f"\n({profiles_dir()})")


@command.command(name="show")
@click.argument("name")
def show(name: str) -> None:
    """Show one profile (by name or path), with every setting it fixes."""
    from edgeptm.profiles import load_profile

    profile = load_profile(name)
    click.echo(f"# {profile.name}: {profile.description}")
    click.echo(f"# file: {profile.path} (sha256 {profile.sha256[:12]})")
    click.echo(yaml.safe_dump(profile.as_dict(), sort_keys=False).rstrip())
