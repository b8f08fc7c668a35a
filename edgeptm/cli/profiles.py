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
        [
            p.name,
            p.device.family,
            p.compile.target or "onnxruntime",
            p.quantize.mode or "by task",
            p.runtime.threads,
            p.description,
        ]
        for p in list_profiles()
    ]
    click.echo(table(["profile", "family", "target", "precision", "threads", "description"], rows))
    click.echo(f"\n({profiles_dir()})")


@command.command(name="show")
@click.argument("name")
def show(name: str) -> None:
    """Show one profile (by name or path): what it means in words, then every setting it fixes."""
    from edgeptm.profiles import explain, load_profile

    profile = load_profile(name)
    click.echo(f"{profile.name}: {profile.description}")
    click.echo(f"file: {profile.path} (sha256 {profile.sha256[:12]})")
    click.echo("")
    lines = [line.partition(": ") for line in explain(profile)]
    width = max(len(topic) for topic, _, _ in lines) + 2
    for topic, _, text in lines:
        click.echo(f"{topic + ':':<{width}}{text}")
    click.echo("\nsettings:")
    settings = yaml.dump(profile.as_dict(), Dumper=_Dumper, sort_keys=False, width=1000).rstrip()
    click.echo("\n".join(f"  {line}" for line in settings.splitlines()))


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of numbers on one line: ``batch: [1, 1, 4]``."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(v, (int, float)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
