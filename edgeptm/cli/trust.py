"""``edgeptm verify`` and ``edgeptm trust``: an artifact's digest, and who may run its native code."""

from __future__ import annotations

import click

from edgeptm.cli.common import echo_json


def _describe(artifact) -> dict:
    from edgeptm import trust
    from edgeptm.runtime.base import native_code

    native = native_code(artifact)
    found = trust.lookup(artifact.digest) if native else None
    return {
        "path": str(artifact.path),
        "kind": artifact.kind,
        "precision": artifact.manifest.get("precision"),
        "files": len(artifact.manifest["files"]),
        "bytes": artifact.size_bytes(),
        "digest": artifact.digest,
        "native_code": native,
        "trusted": None if not native else (found or {}).get("how") if found else False,
    }


@click.command(name="verify")
@click.argument("artifact", type=click.Path())
@click.option("--digest", default=None, metavar="SHA256", help="Also require this digest (exit 1 if it differs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(artifact: str, digest: str | None, as_json: bool) -> None:
    """Check ARTIFACT (manifest schema, confined paths, no unlisted files, every checksum) and
    print its digest: sha256 over the canonical manifest, the same wherever the directory is copied."""
    from edgeptm import trust
    from edgeptm.artifacts import open_artifact

    opened = open_artifact(artifact)
    if digest is not None:
        trust.pin(opened, digest)
    info = _describe(opened)
    if as_json:
        echo_json(info)
        return
    click.echo(
        f"verified: {info['path']} ({info['kind']}, {info['precision']}, {info['files']} files, "
        f"{info['bytes'] / 1e6:.1f} MB)"
    )
    click.echo(f"digest: {info['digest']}")
    if not info["native_code"]:
        click.echo("native code: none (data only; loads without trust)")
        return
    for line in info["native_code"]:
        click.echo(f"native code: {line}")
    if info["trusted"]:
        click.echo(f"trusted here: yes ({info['trusted']})")
    else:
        click.echo(f"trusted here: no (load it after 'edgeptm trust {info['path']}', or pin it with --digest)")


@click.command(name="trust")
@click.argument("artifact", type=click.Path(), required=False)
@click.option("--digest", default=None, metavar="SHA256", help="Trust ARTIFACT only if it has this digest.")
@click.option("--list", "list_", is_flag=True, help="List the trusted artifacts.")
@click.option("--revoke", default=None, metavar="SHA256|DIR", help="Stop trusting an artifact (digest or directory).")
def trust_command(artifact: str | None, digest: str | None, list_: bool, revoke: str | None) -> None:
    """Trust ARTIFACT's native code from now on (for this user): some compiled engines (the targets
    say which) run code when they load, so one built elsewhere loads only once trusted. Prints the
    native code it holds and records its digest; a changed artifact has another digest."""
    from pathlib import Path

    from edgeptm import trust
    from edgeptm.artifacts import open_artifact

    if sum(bool(x) for x in (artifact, list_, revoke)) != 1:
        raise click.UsageError("give one of ARTIFACT, --list or --revoke")
    if list_:
        items = trust.entries()
        for item in items:
            click.echo(f"{item['digest']}  {item.get('how', '?')}  {item.get('at', '?')}  {item.get('path', '?')}")
        click.echo(f"{len(items)} trusted artifact(s) in {trust.store()}")
        return
    if revoke:
        value = open_artifact(revoke).digest if Path(revoke).is_dir() else trust.check_digest_arg(revoke)
        done = trust.revoke(value)
        click.echo(f"{'revoked' if done else 'was not trusted'}: {value}")
        return
    opened = open_artifact(artifact)
    if digest is not None:
        trust.pin(opened, digest)
    info = _describe(opened)
    if not info["native_code"]:
        click.echo(f"{info['path']}: holds no native code (data only); it loads without trust, nothing recorded")
        click.echo(f"digest: {info['digest']}")
        return
    for line in info["native_code"]:
        click.echo(f"native code: {line}")
    trust.record(opened, "trusted with 'edgeptm trust'", info["native_code"])
    click.echo(f"trusted: {info['digest']} ({info['path']})")
