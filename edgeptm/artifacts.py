"""Artifact directories and their manifest: the contract between stages.

Every stage output is a directory holding its files and a ``manifest.json`` that records what
the files are (with sha256 and size), where they came from (the parent's manifest hash), the
model's inputs/outputs, labels, preprocessing, precision, the environment that built it and its
metrics. Stages find everything they need through the manifest, never by guessing file names.

Writing is atomic: a stage writes into a hidden staging directory beside ``--out`` and the
directory is renamed into place only once the manifest (written last) is complete, so a failed
or interrupted stage leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edgeptm.errors import ArtifactError, UsageError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
KINDS = ("checkpoint", "onnx")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Artifact:
    """An artifact directory whose manifest has been read (and, by default, verified)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def task(self) -> str:
        return self.manifest.get("task", "")

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels") or [])

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics") or {}

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.manifest.get("preprocessing") or {}

    @property
    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST_NAME)

    def file(self, role: str) -> Path:
        """Path of the file the manifest registers under ``role``."""
        try:
            rel = self.manifest["files"][role]["path"]
        except KeyError:
            raise ArtifactError(
                f"{self.path}: manifest has no file with role '{role}' "
                f"(roles: {', '.join(sorted(self.manifest.get('files', {}))) or 'none'})"
            ) from None
        return self.path / rel

    def has_file(self, role: str) -> bool:
        return role in self.manifest.get("files", {})

    def size_bytes(self, roles: list[str] | None = None) -> int:
        """Bytes of the registered files (all of them, or those of ``roles``)."""
        files = self.manifest.get("files", {})
        return sum(int(f["size"]) for r, f in files.items() if roles is None or r in roles)

    def as_parent(self) -> dict[str, Any]:
        """The record a child artifact keeps of this one."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "manifest_sha256": self.manifest_sha256,
        }


def open_artifact(path: str | os.PathLike[str], verify: bool = True) -> Artifact:
    """Read an artifact directory; with ``verify`` check every file against its checksum."""
    root = Path(path)
    if not root.exists():
        from edgeptm.models.pretrained import names_a_model, pretrained_artifact

        if names_a_model(str(path)):  # a registered model used as-is: materialised once, then cached
            return pretrained_artifact(str(path))
        raise ArtifactError(f"{root}: no such artifact directory")
    if not root.is_dir():
        if root.suffix.lower() == ".onnx":
            raise ArtifactError(_bare_onnx_message(root))
        raise ArtifactError(f"{root}: not an artifact directory (artifacts are directories with a {MANIFEST_NAME})")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{root}: no {MANIFEST_NAME}; not an edgeptm artifact "
            "(create one with 'edgeptm finetune', 'export' or 'quantize')"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or "kind" not in manifest or "files" not in manifest:
        raise ArtifactError(f"{manifest_path}: not an edgeptm manifest (no 'kind' or 'files')")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{manifest_path}: schema_version {version!r}, this edgeptm reads {SCHEMA_VERSION}; "
            "rebuild the artifact with this version"
        )
    artifact = Artifact(root, manifest)
    if verify:
        verify_artifact(artifact)
    return artifact


def _bare_onnx_message(path: Path) -> str:
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        detail = str(exc).splitlines()[0] if str(exc) else "unparseable"
        return f"{path}: not an ONNX model ({type(exc).__name__}: {detail})"
    return (
        f"{path}: a bare ONNX file has no manifest (labels, tokenizer, validation data); "
        "edgeptm works on artifact directories: make one with 'edgeptm export'"
    )


def verify_artifact(artifact: Artifact) -> None:
    """Check that every registered file exists with the recorded size and sha256."""
    for role, entry in sorted(artifact.manifest["files"].items()):
        file = artifact.path / entry["path"]
        if not file.is_file():
            raise ArtifactError(f"{artifact.path}: file '{entry['path']}' ({role}) listed in the manifest is missing")
        size = file.stat().st_size
        if size != entry["size"] or sha256_file(file) != entry["sha256"]:
            raise ArtifactError(
                f"{artifact.path}: file '{entry['path']}' ({role}) does not match its manifest checksum; "
                "the artifact was modified or is corrupt: rebuild it"
            )


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an --out that would overwrite something, before any expensive work starts."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out}: directory exists and is not empty (pass --force to replace it)")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON next to ``path`` and rename it into place: readers never see half a report."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_not_source(out: Path, source: Artifact) -> None:
    """--out may not replace (or sit inside) the artifact a stage reads from."""
    out, src = Path(out).resolve(), source.path.resolve()
    if out == src or src in out.parents:
        raise UsageError(f"--out {out}: would overwrite its own source artifact {src}; choose another directory")


def open_stage_source(
    source: str | os.PathLike[str] | Artifact,
    out: Path,
    force: bool,
    stage: str,
    accepts: str,
    ok: Callable[[Artifact], bool] | None = None,
) -> Artifact:
    """The common start of a stage: check --out, open and verify the source, check it fits the stage.

    ``ok`` is a predicate over the opened artifact (default: any); ``accepts`` says in words what fits.
    """
    check_out_dir(out, force)
    artifact = source if isinstance(source, Artifact) else open_artifact(source)
    if ok is not None and not ok(artifact):
        raise UsageError(
            f"{artifact.path}: {stage} takes {accepts}, this one is '{artifact.kind}' "
            f"({artifact.manifest.get('precision')})"
        )
    check_not_source(out, artifact)
    return artifact


def environment_record() -> dict[str, Any]:
    from edgeptm.environment import describe

    return describe()


@dataclass
class ArtifactWriter:
    """Stage an artifact in a temporary directory and move it into place when whole.

    Use as a context manager: files go into ``writer.dir``; ``finish(manifest)`` checksums the
    registered files, writes the manifest last and renames the directory to ``out``. If the
    block raises, the staging directory is removed and ``out`` is untouched.
    """

    out: Path
    force: bool = False
    dir: Path = field(init=False)
    files: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_out_dir(self.out, self.force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.dir = self.out.parent / f".{self.out.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir()

    def __enter__(self) -> "ArtifactWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def add(self, role: str, relpath: str) -> Path:
        """Register a file (relative to the artifact root) under a role; returns its staging path."""
        self.files[role] = relpath
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def carry(self, source: Artifact, prefixes: tuple[str, ...] = ("tokenizer/", "val_data", "calib_data")) -> None:
        """Copy the parent's files whose roles start with ``prefixes`` (tokenizer, validation and
        calibration data)."""
        for role, entry in sorted(source.manifest["files"].items()):
            if role.startswith(prefixes):
                shutil.copy2(source.path / entry["path"], self.add(role, entry["path"]))

    def preview(self, kind: str, manifest: dict[str, Any]) -> Artifact:
        """The artifact as it stands in staging, so a stage can evaluate what it is about to publish."""
        files = {role: {"path": rel, "size": (self.dir / rel).stat().st_size} for role, rel in self.files.items()}
        return Artifact(self.dir, {"schema_version": SCHEMA_VERSION, "kind": kind, **manifest, "files": files})

    def finish(self, kind: str, manifest: dict[str, Any]) -> Artifact:
        from edgeptm import __version__

        files = {}
        for role, rel in sorted(self.files.items()):
            path = self.dir / rel
            if not path.is_file():
                raise ArtifactError(f"internal: file '{rel}' ({role}) was registered but not written")
            files[role] = {"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size}
        full = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "created_by": f"edgeptm {__version__}",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **manifest,
            "files": files,
        }
        full.setdefault("environment", environment_record())
        tmp = self.dir / (MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(full, indent=2, ensure_ascii=False, default=_json_default) + "\n")
        os.replace(tmp, self.dir / MANIFEST_NAME)
        self._move_into_place()
        return Artifact(self.out, full)

    def _move_into_place(self) -> None:
        # Re-check: something may have appeared at --out while we worked.
        check_out_dir(self.out, self.force)
        trash = None
        if self.out.exists():
            trash = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, trash)
        os.replace(self.dir, self.out)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
