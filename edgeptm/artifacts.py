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

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from edgeptm.errors import ArtifactError, UsageError
from edgeptm.manifest import (
    MAX_MANIFEST_BYTES,
    SCHEMA_VERSION,
    check_paths,
    digest_of,
    parse_manifest,
    relpath_problem,
    unregistered_files,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; staging left by a dead process is then not reclaimed
    fcntl = None  # type: ignore[assignment]

MANIFEST_NAME = "manifest.json"
log = logging.getLogger(__name__)


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
    # How this process came to trust the artifact's native code (None: not trusted): "built here",
    # "trusted with 'edgeptm trust'", "pinned digest". Set by edgeptm.trust, never read from disk.
    trust: str | None = field(default=None, compare=False)

    @property
    def digest(self) -> str:
        """sha256 over the canonical manifest, which holds every file's sha256: names the artifact
        wherever it is copied (what 'edgeptm verify' prints and 'edgeptm trust' records)."""
        return digest_of(self.manifest)

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
    def view(self) -> Any:
        """The manifest, typed (``edgeptm.view.ManifestView``): io, preprocessing and its kind, precision, runtime."""
        from edgeptm.view import view_of

        return view_of(self.manifest)

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
    if not root.exists():  # a registered model's name is the stages' business (edgeptm.sources)
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
    if manifest_path.is_symlink():
        raise ArtifactError(f"{manifest_path}: a symlink; an artifact's manifest is a file inside it")
    try:
        with open(manifest_path, "rb") as fh:
            text = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc.strerror})") from None
    manifest = parse_manifest(text, str(manifest_path))
    check_paths(root, manifest)
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
    """Check that the directory holds exactly the registered files, each with its recorded size
    and sha256: nothing a stage or backend reads is unchecked."""
    extra = unregistered_files(artifact.path, artifact.manifest)
    if extra:
        raise ArtifactError(
            f"{artifact.path}: '{extra[0]}' is not listed in the manifest"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            + "; an artifact holds only the files its manifest checksums: remove it, or rebuild the artifact"
        )
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


def check_not_input(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """--out may not equal, contain or lie inside any input of the stage (source artifact, --train,
    --val, --calib, a profile file): with --force, replacing it would delete that input."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None or str(given) == "":
            continue
        path = Path(given).resolve()
        if target == path or path in target.parents or target in path.parents:
            where = "is that input" if target == path else "lies inside it" if path in target.parents else "contains it"
            raise UsageError(
                f"--out {out}: would overwrite its own input {given} (--out {where}); choose a directory apart "
                "from the inputs"
            )


def check_out_dir(out: Path, force: bool, inputs: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """Refuse an --out that would overwrite something, before any expensive work starts."""
    out = Path(out)
    check_not_input(out, inputs)
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


def _artifact_dir(folder: Path) -> bool:
    """Whether ``folder`` holds an edgeptm manifest (an unreadable manifest.json counts: it may be one)."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(data, dict) or ("kind" in data and "files" in data)


def check_output_paths(
    paths: Iterable[str | os.PathLike[str]], option: str, inputs: Iterable[str | os.PathLike[str] | None] = ()
) -> None:
    """Refuse, before anything runs, an output file that would overwrite an input (an artifact, a
    profile file) or land inside an artifact directory (any folder at or above it holding a manifest):
    a report (or a timing cache) must never replace or add to an artifact's files."""
    for given in paths:
        path = Path(given).resolve()
        for source in inputs:
            if source is None or str(source) == "":
                continue
            resolved = Path(source).resolve()
            if path == resolved or resolved in path.parents:
                where = "is" if path == resolved else "lies inside"
                raise UsageError(f"{option} {given}: {where} the input {source}; choose a path apart from the inputs")
        if path.is_dir():
            raise UsageError(f"{option} {given}: is a directory; give a file name")
        for folder in path.parents:
            if _artifact_dir(folder):
                raise UsageError(
                    f"{option} {given}: lies inside the artifact directory {folder} (it holds a {MANIFEST_NAME}); "
                    "choose a path outside it"
                )


def check_not_source(out: Path, source: Artifact) -> None:
    """--out may not replace, contain or sit inside the artifact a stage reads from."""
    check_not_input(out, [source.path])


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
    inputs: Iterable[str | os.PathLike[str] | None] = ()
    dir: Path = field(init=False)
    files: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.inputs = [i for i in self.inputs if i is not None]
        check_out_dir(self.out, self.force, self.inputs)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.token = uuid.uuid4().hex[:8]
        # The lock is taken before the staging directory exists and held until it is gone: a
        # staging directory whose lock nobody holds belongs to a process that died.
        self._lock = _hold_lock(self.out.parent / f".{self.out.name}.tmp-{self.token}.lock")
        reclaim_staging(self.out.parent)
        self.dir = self.out.parent / f".{self.out.name}.tmp-{self.token}"
        self.dir.mkdir()

    def __enter__(self) -> "ArtifactWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        _release_lock(self._lock)

    def add(self, role: str, relpath: str) -> Path:
        """Register a file (relative to the artifact root) under a role; returns its staging path.
        The path must stay inside staging: a source's manifest may have suggested it."""
        why = relpath_problem(relpath)
        if why:
            raise ArtifactError(f"file '{relpath}' ({role}): {why}; nothing is written outside the artifact")
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        base = self.dir.resolve()
        if base not in path.resolve().parents:
            raise ArtifactError(f"file '{relpath}' ({role}) resolves outside the staging directory; nothing written")
        self.files[role] = relpath
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
        staged = {"schema_version": SCHEMA_VERSION, "kind": kind, **manifest, "files": files}
        return Artifact(self.dir, staged, trust="built here (staging)")

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
        check_out_dir(self.out, self.force, self.inputs)
        trash = None
        if self.out.exists():
            # Killed between the two renames, the next writer here puts the old one back.
            trash = self.out.parent / f".{self.out.name}.old-{self.token}"
            os.replace(self.out, trash)
        os.replace(self.dir, self.out)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


# .NAME.tmp-T: a writer's staging; .NAME.old-T: the previous NAME, obsolete once the new one is in
# place; .NAME.prev-T: the previous NAME, set aside while a build writes the new one in place.
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old|prev)-(?P<token>[0-9a-f]{8})$")
LEGACY_STAGING_AGE_S = 3600  # staging without a lock file (older edgeptm): reclaimed after an hour


def _hold_lock(path: Path) -> Any:
    """An exclusive flock on ``path`` for as long as the returned handle is open (the kernel drops
    it when the process dies, kill -9 included)."""
    handle = open(path, "a+")
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _release_lock(handle: Any) -> None:
    if handle is None or handle.closed:
        return
    Path(handle.name).unlink(missing_ok=True)
    handle.close()


def _owner_gone(lock: Path, entry: Path) -> Any:
    """An open, locked handle on ``lock`` when no live process holds it (else None). A staging
    directory with no lock file at all counts as abandoned once it is an hour old."""
    if fcntl is None:
        return None
    if not lock.exists():
        try:
            age = time.time() - entry.stat().st_mtime
        except OSError:
            return None
        return open(os.devnull) if age > LEGACY_STAGING_AGE_S else None
    try:
        handle = open(lock, "a+")
    except OSError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def reclaim_staging(parent: Path) -> list[str]:
    """Remove what writers killed in ``parent`` left behind: staging directories (``.NAME.tmp-*``,
    up to a whole model each) and old outputs moved aside for a swap (``.NAME.old-*``), which go
    back to ``NAME`` when the swap never finished. Returns what it did, and logs it."""
    done: list[str] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return done
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        lock = parent / f".{match['name']}.tmp-{match['token']}.lock"
        handle = _owner_gone(lock, entry)
        if handle is None:
            continue
        try:
            out = parent / match["name"]
            if match["what"] == "prev":  # the build that replaced it never finished: undo it
                shutil.rmtree(out, ignore_errors=True)
            if match["what"] in ("old", "prev") and not out.exists():
                os.replace(entry, out)
                done.append(f"restored {out.name} from {entry.name}, moved aside by a run that was interrupted")
            else:
                shutil.rmtree(entry, ignore_errors=True)
                done.append(f"removed {entry.name}, left in {parent} by a run that was interrupted")
        finally:
            if handle.name != os.devnull:
                lock.unlink(missing_ok=True)
            handle.close()
    for line in done:
        log.info("%s", line)
    return done


@contextlib.contextmanager
def set_aside(out: Path) -> Iterator[bool]:
    """For a stage that builds several artifacts in place under ``out`` (build): a non-empty
    ``out`` is moved aside while the block runs, put back if it fails, and deleted only once it
    succeeded. Killed outright, the next writer beside it puts the old one back. Yields whether
    an old ``out`` is being replaced."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    lock = _hold_lock(out.parent / f".{out.name}.tmp-{token}.lock")
    try:
        reclaim_staging(out.parent)
        previous = None
        if out.is_dir() and any(out.iterdir()):
            previous = out.parent / f".{out.name}.prev-{token}"
            os.replace(out, previous)
        out.mkdir(exist_ok=True)
        try:
            yield previous is not None
        except BaseException:
            if previous is not None:
                shutil.rmtree(out, ignore_errors=True)
                os.replace(previous, out)
            raise
        if previous is not None:  # renamed first: a kill during the removal leaves an obsolete '.old'
            obsolete = out.parent / f".{out.name}.old-{token}"
            os.replace(previous, obsolete)
            shutil.rmtree(obsolete, ignore_errors=True)
    finally:
        _release_lock(lock)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
