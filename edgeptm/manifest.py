"""What a manifest may say: its schema, its paths, and the digest that names it.

An artifact directory may come from anyone, so its ``manifest.json`` is input to be checked before
anything believes it. ``read_manifest`` refuses, with one line naming the key, a manifest that is
too large or too deeply nested, that lacks a key the stages need, whose values have the wrong
type, or whose paths are absolute, climb out with ``..``, or resolve (through symlinks) outside the
artifact. Keys not listed here are kept as they are (metrics and build records grow), but every
key that code reads is typed here.

The artifact digest is sha256 over the canonical manifest (sorted keys, no whitespace). The
manifest holds every file's sha256, so the digest names the whole artifact wherever it is copied:
it is what ``edgeptm trust`` records and what ``load(path, digest=...)`` pins.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from edgeptm.errors import ArtifactError

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 16 << 20  # the largest real manifests (VGG16 with a long history) are ~100 KB
MAX_DEPTH = 32  # real manifests nest 6 deep; deeper is an attack on the parser, not a record
MAX_PATH_CHARS = 1024
MAX_TOKENS = 1 << 17  # far beyond any encoder's position table; a bound keeps tokenizers sane
MAX_IMAGE_SIDE = 1 << 14
KINDS = ("checkpoint", "onnx", "engine")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Spec:
    """A type rule for one manifest value; ``check`` raises ArtifactError naming ``where``."""

    def check(self, value: Any, where: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _fail(where: str, why: str) -> ArtifactError:
    return ArtifactError(f"'{where}' {why}")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


class Str(_Spec):
    def __init__(self, choices: tuple[str, ...] = (), max_chars: int = 1 << 16) -> None:
        self.choices, self.max_chars = choices, max_chars

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise _fail(where, f"must be {self.describe()}, not {_type_name(value)}")
        if len(value) > self.max_chars:
            raise _fail(where, f"is longer than {self.max_chars} characters")
        if self.choices and value not in self.choices:
            raise _fail(where, f"is {value!r}, not one of {', '.join(self.choices)}")

    def describe(self) -> str:
        return "a string"


class Int(_Spec):
    def __init__(self, minimum: int | None = None, maximum: int = 1 << 62) -> None:
        self.minimum, self.maximum = minimum, maximum

    def check(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, f"must be {self.describe()}, not {_type_name(value)}")
        if self.minimum is not None and value < self.minimum:
            raise _fail(where, f"must be >= {self.minimum}, not {value}")
        if value > self.maximum:
            raise _fail(where, f"must be <= {self.maximum}, not {value}")

    def describe(self) -> str:
        return "an integer"


class Number(_Spec):
    def check(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, f"must be a number, not {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(where, "must be a finite number")

    def describe(self) -> str:
        return "a number"


class Bool(_Spec):
    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise _fail(where, f"must be true or false, not {_type_name(value)}")

    def describe(self) -> str:
        return "true or false"


class Any_(_Spec):
    def check(self, value: Any, where: str) -> None:
        pass

    def describe(self) -> str:
        return "anything"


class Opt(_Spec):
    """The value may also be null (absent keys are the Record's business)."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec

    def check(self, value: Any, where: str) -> None:
        if value is not None:
            self.spec.check(value, where)

    def describe(self) -> str:
        return f"{self.spec.describe()} or null"


class Either(_Spec):
    def __init__(self, *specs: _Spec) -> None:
        self.specs = specs

    def check(self, value: Any, where: str) -> None:
        for spec in self.specs:
            try:
                spec.check(value, where)
                return
            except ArtifactError:
                continue
        raise _fail(where, f"must be {self.describe()}, not {_type_name(value)}")

    def describe(self) -> str:
        return " or ".join(s.describe() for s in self.specs)


class List(_Spec):
    def __init__(self, item: _Spec, min_items: int = 0, max_items: int = 1 << 20) -> None:
        self.item, self.min_items, self.max_items = item, min_items, max_items

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _fail(where, f"must be a list, not {_type_name(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            raise _fail(where, f"must hold {self.min_items} to {self.max_items} items, not {len(value)}")
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")

    def describe(self) -> str:
        return "a list"


class Map(_Spec):
    """An object with free keys (strings) whose values all follow one rule."""

    def __init__(self, value: _Spec) -> None:
        self.value = value

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object, not {_type_name(value)}")
        for key, item in value.items():
            self.value.check(item, f"{where}.{key}")

    def describe(self) -> str:
        return "an object"


class Record(_Spec):
    """An object whose listed keys follow their rules; ``required`` ones must be present."""

    def __init__(self, fields: dict[str, _Spec], required: tuple[str, ...] = ()) -> None:
        self.fields, self.required = fields, required

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object, not {_type_name(value)}")
        for key in self.required:
            if key not in value:
                raise ArtifactError(f"manifest has no '{_join(where, key)}' (a key every artifact of this kind needs)")
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], _join(where, key))

    def describe(self) -> str:
        return "an object"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class RelPath(_Spec):
    """A path inside the artifact: relative, '/'-separated, normalised, no '..' and no NUL.
    Resolution through symlinks is checked against the directory in ``check_paths``."""

    def check(self, value: Any, where: str) -> None:
        Str(max_chars=MAX_PATH_CHARS).check(value, where)
        why = relpath_problem(value)
        if why:
            raise _fail(where, f"= {value!r}: {why}; an artifact's paths stay inside it")

    def describe(self) -> str:
        return "a relative path"


def relpath_problem(value: str) -> str | None:
    """Why ``value`` is not a normalised relative path inside a directory (None when it is)."""
    if not value or "\x00" in value or "\\" in value:
        return "empty, or holds a NUL or a backslash"
    pure = PurePosixPath(value)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", value):
        return "an absolute path"
    if ".." in pure.parts:
        return "climbs out with '..'"
    if str(pure) != value or value in (".",):
        return "not a normalised path"
    return None


SHA256 = Str()
TENSOR = Record(
    {"name": Str(max_chars=1024), "dtype": Str(max_chars=64), "shape": List(Either(Int(0), Str(max_chars=256)))},
    required=("name", "dtype", "shape"),
)
FILE = Record({"path": RelPath(), "sha256": SHA256, "size": Int(0)}, required=("path", "sha256", "size"))
# Per input: axis -> [min, max], or "min"/"opt"/"max" -> a whole shape (as each target records its shapes).
BOUNDS = Map(List(Int(0), min_items=1, max_items=8))

MANIFEST = Record(
    {
        "schema_version": Int(),
        "kind": Str(KINDS),
        "created_by": Str(),
        "task": Str(max_chars=128),
        "labels": Opt(List(Str(max_chars=4096))),
        "files": Map(FILE),
        "io": Record(
            # a decoder lists its KV cache: two tensors per layer each way
            {"inputs": List(TENSOR, min_items=1, max_items=512), "outputs": List(TENSOR, min_items=1, max_items=512)},
            required=("inputs", "outputs"),
        ),
        "preprocessing": Opt(
            Record(
                {
                    "tokenizer": RelPath(),
                    "max_length": Int(1, MAX_TOKENS),
                    "resize": Int(1, MAX_IMAGE_SIDE),
                    "crop": Int(1, MAX_IMAGE_SIDE),
                    "mean": List(Number(), 1, 4),
                    "std": List(Number(), 1, 4),
                    "interpolation": Str(),
                    "grey_to_rgb": Bool(),
                    "channel_order": Str(),
                    "layout": Str(),
                    "scale": Number(),
                }
            )
        ),
        "model": Opt(
            Record(
                {
                    "encoder_config": RelPath(),
                    "encoder_type": Str(),
                    "pooling": Str(),
                    "library": Str(),
                    "arch": Str(),
                    "normalize": Bool(),
                    "lm_config": RelPath(),
                    "model_type": Str(),
                    "num_layers": Int(1, 4096),
                    "num_attention_heads": Int(1, 4096),
                    "num_key_value_heads": Int(1, 4096),
                    "head_dim": Int(1, 4096),
                    "vocab_size": Int(1, 10_000_000),
                    "context_length": Int(1, MAX_TOKENS),
                }
            )
        ),
        "precision": Opt(Str()),
        "parents": Opt(
            List(Record({"kind": Str(), "path": Str(max_chars=4096), "manifest_sha256": Opt(Str())}), max_items=16)
        ),
        "metrics": Opt(Map(Any_())),
        "validation": Opt(Map(Any_())),
        "training": Opt(Map(Any_())),
        "export": Opt(Map(Any_())),
        "quantization": Opt(Record({"mode": Str()})),
        "profile": Opt(Record({"name": Str()})),
        "runtime": Opt(Record({"onnxruntime": Opt(Record({"disabled_optimizers": List(Str())}))})),
        # role -> how a registered file was derived from another for one runtime (export's ONNX
        # Runtime graph 'ort-model' beside the portable 'model'); its backend reads 'providers'.
        "derived": Opt(
            Map(
                Record(
                    {
                        "from": Str(max_chars=256),
                        "for": Str(max_chars=256),
                        "providers": List(Str(max_chars=256), 0, 16),
                    },
                    required=("from", "for"),
                )
            )
        ),
        "compile": Opt(
            Record(
                {
                    "target": Str(),
                    "device": Str(),
                    "torch": Opt(Str()),
                    "precision": Opt(Str()),
                    "precision_asked": Opt(Str()),
                    "compute_capability": Opt(Str()),
                    "gpu": Opt(Str()),
                    "version_compatible": Opt(Bool()),
                    "hardware_compatibility": Opt(Str()),
                    "cuda_graph": Opt(Bool()),
                    "static_shapes": Opt(Bool()),
                    "inference_precision_hint": Opt(Str()),
                    "dynamic_shapes": Opt(Map(BOUNDS)),
                    "shapes": Opt(Map(BOUNDS)),
                }
            )
        ),
    },
    required=("schema_version", "kind", "files", "task", "io"),
)


# What each task's code reads from 'model' (the model family, the pooling, the architecture).
MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "text-classification": ("encoder_type", "encoder_config", "pooling"),
    "feature-extraction": ("encoder_type", "encoder_config", "pooling"),
    "image-classification": ("library", "arch"),
    "text-generation": ("model_type", "lm_config", "num_layers", "num_key_value_heads", "head_dim", "vocab_size"),
}


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a hostile manifest could be deeper than Python's stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_manifest(text: bytes | str, where: str) -> dict[str, Any]:
    """JSON -> a manifest checked against the schema (not yet against any directory)."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{where}: manifest is {len(text)} bytes, more than {MAX_MANIFEST_BYTES} (not a manifest)")
    try:
        manifest = json.loads(text)
    except RecursionError:
        raise ArtifactError(f"{where}: manifest nests deeper than {MAX_DEPTH} levels (not a manifest)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{where}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where}: manifest must be a JSON object, not {_type_name(manifest)}")
    if _depth(manifest) > MAX_DEPTH:
        raise ArtifactError(f"{where}: manifest nests deeper than {MAX_DEPTH} levels (not a manifest)")
    version = manifest.get("schema_version")
    if "kind" in manifest and version != SCHEMA_VERSION:  # another version's schema is not this one
        raise ArtifactError(
            f"{where}: schema_version {version!r}, this edgeptm reads {SCHEMA_VERSION}; "
            "rebuild the artifact with this version"
        )
    try:
        MANIFEST.check(manifest, "")
        _check_consistency(manifest)
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    return manifest


def _check_consistency(manifest: dict[str, Any]) -> None:
    """What the types alone cannot say: one file per path, labels that fit the model's output."""
    seen: dict[str, str] = {}
    for role, entry in manifest["files"].items():
        if not _SHA256.fullmatch(entry["sha256"]):
            raise _fail(f"files.{role}.sha256", "is not a sha256 (64 lowercase hex digits)")
        if entry["path"] == "manifest.json":
            raise _fail(f"files.{role}.path", "names the manifest itself")
        if entry["path"] in seen:
            twice = f"= {entry['path']!r} is registered twice (also as {seen[entry['path']]})"
            raise _fail(f"files.{role}.path", twice)
        seen[entry["path"]] = role
    for role, record in (manifest.get("derived") or {}).items():
        for named in (role, record["from"]):
            if named not in manifest["files"]:
                raise _fail(f"derived.{role}", f"names the file role '{named}', which 'files' does not register")
    model = manifest.get("model") or {}
    needs = MODEL_KEYS.get(manifest["task"], ())
    missing = [key for key in needs if key not in model]
    if missing:
        raise ArtifactError(f"manifest has no 'model.{missing[0]}' (a {manifest['task']} artifact needs it)")
    if manifest["task"] in MODEL_KEYS and not manifest.get("preprocessing"):
        raise ArtifactError(f"manifest has no 'preprocessing' (a {manifest['task']} artifact needs it)")
    labels = manifest.get("labels") or []
    shape = manifest["io"]["outputs"][0]["shape"]
    width = shape[-1] if shape else None
    if labels and isinstance(width, int) and width != len(labels):
        raise ArtifactError(
            f"manifest has {len(labels)} labels for a model with {width} outputs ('labels' and 'io.outputs' disagree)"
        )


def check_paths(root: Path, manifest: dict[str, Any]) -> None:
    """Every path the manifest names stays inside ``root`` once symlinks are resolved."""
    base = root.resolve()
    named = [(f"files.{role}.path", entry["path"]) for role, entry in manifest["files"].items()]
    for section, key in (("preprocessing", "tokenizer"), ("model", "encoder_config"), ("model", "lm_config")):
        value = (manifest.get(section) or {}).get(key)
        if value is not None:
            named.append((f"{section}.{key}", value))
    for where, rel in named:
        resolved = (base / rel).resolve()
        if resolved != base and base not in resolved.parents:
            raise ArtifactError(
                f"{root}: '{where}' = {rel!r} resolves outside the artifact (through a symlink); "
                "an artifact's paths stay inside it"
            )


def unregistered_files(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Entries of the directory that nothing checks: files the manifest does not list, symlinks,
    and anything that is neither a file nor a directory. Nothing may read them, so their presence
    is refused."""
    registered = {entry["path"] for entry in manifest["files"].values()} | {"manifest.json"}
    extra = []
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(top) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                extra.append(f"{rel} (a symlink)")
            elif name in files and (rel not in registered or not path.is_file()):
                extra.append(rel)
    return sorted(extra)


def canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(manifest: dict[str, Any]) -> str:
    """The artifact digest: ``sha256:`` + hex of the canonical manifest."""
    return "sha256:" + hashlib.sha256(canonical(manifest)).hexdigest()


def normalise_digest(value: str) -> str:
    """Accept 'sha256:HEX' or bare HEX; refuse anything else."""
    text = value.strip().lower()
    hexpart = text.removeprefix("sha256:")
    if not _SHA256.fullmatch(hexpart):
        raise ArtifactError(f"digest {value!r}: expected sha256:<64 hex digits> (as 'edgeptm verify' prints)")
    return "sha256:" + hexpart
