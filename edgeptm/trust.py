"""Which artifacts may run native code here: the user's trust store, and digest pins.

Checksums prove an artifact's files match its manifest, but anyone can write a manifest: they
cannot prove who built it. That is enough for data (ONNX graphs, IRs, safetensors), which runtimes
parse but do not execute. It is not enough for artifacts whose loading maps native code (a compiled
package holding a shared library whose constructors run when it is loaded; a GPU plan that may
carry host code: each target's descriptor says which of its engines do). Those load only when trusted:

- built by this user on this machine (``compile`` records the digest when it writes one);
- trusted once with ``edgeptm trust DIR`` (records the digest, prints the native code it holds);
- or pinned: ``load(path, digest=...)`` / ``--digest``, the way pip's ``--require-hashes`` pins.

The store is a directory of small JSON files named by digest (``$EDGEPTM_TRUST_DIR``, else
``$XDG_CONFIG_HOME/edgeptm/trusted``, else ``~/.config/edgeptm/trusted``): one file per artifact,
written atomically, so concurrent builds never lose each other's records.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ArtifactError, UntrustedError
from edgeptm.manifest import normalise_digest


def store() -> Path:
    env = os.environ.get("EDGEPTM_TRUST_DIR")
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "edgeptm" / "trusted"


def _entry_path(digest: str) -> Path:
    return store() / (normalise_digest(digest).removeprefix("sha256:") + ".json")


def lookup(digest: str) -> dict[str, Any] | None:
    """The store's record of ``digest``, or None."""
    path = _entry_path(digest)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("digest") == normalise_digest(digest) else None


def record(artifact: Artifact, how: str, native_code: list[str]) -> dict[str, Any]:
    """Trust ``artifact`` (by digest) from now on, for this user."""
    entry = {
        "digest": artifact.digest,
        "how": how,
        "path": str(Path(artifact.path).resolve()),
        "kind": artifact.kind,
        "native_code": native_code,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = _entry_path(artifact.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    artifact.trust = how
    return entry


def revoke(digest: str) -> bool:
    path = _entry_path(digest)
    if not path.is_file():
        return False
    path.unlink()
    return True


def entries() -> list[dict[str, Any]]:
    out = []
    for path in sorted(store().glob("*.json")) if store().is_dir() else []:
        try:
            item = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(item, dict) and "digest" in item:
            out.append(item)
    return out


def pin(artifact: Artifact, digest: str) -> None:
    """Refuse ``artifact`` unless its digest is ``digest``; when it is, its native code is trusted
    for this process (the caller vouched for exactly this artifact)."""
    expected = normalise_digest(digest)
    if artifact.digest != expected:
        raise UntrustedError(
            f"{artifact.path}: digest {artifact.digest} is not the pinned {expected}; this is not the artifact "
            "you pinned (changed, rebuilt or swapped): nothing of it was loaded"
        )
    artifact.trust = "pinned digest"


def require(artifact: Artifact, what: str) -> str:
    """Return how ``artifact`` is trusted, or refuse it before any of its code is mapped.
    ``what`` says which native code loading it would run."""
    if artifact.trust:
        return artifact.trust
    found = lookup(artifact.digest)
    if found is not None:
        artifact.trust = f"trusted ({found.get('how', 'recorded')})"
        return artifact.trust
    raise UntrustedError(
        f"{artifact.path}: loading it runs native code ({what}) and this artifact is not trusted here "
        f"(digest {artifact.digest}); if you know who built it: 'edgeptm trust {artifact.path}' once, or pin it "
        "with --digest / load(path, digest=...); nothing of it was loaded"
    )


def check_digest_arg(value: str | None) -> str | None:
    """A --digest value in canonical form (None stays None); one line when malformed."""
    if value is None:
        return None
    try:
        return normalise_digest(value)
    except ArtifactError as exc:
        raise UntrustedError(str(exc)) from None
