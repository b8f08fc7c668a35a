"""Compile: turn an artifact into an engine for one target (``edgeptm.targets``).

Each target's package builds its engine; the stage around it is common: resolve the options
(explicit, then the device profile's ``compile`` section, then defaults), refuse what the target
does not own or cannot build, stage the engine in a temporary directory, validate it against the
parent (the target's own check), and write a manifest that records where and how it was built, so
``load()`` can refuse an engine this machine cannot run.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from edgeptm import targets, trust
from edgeptm.artifacts import Artifact, ArtifactWriter, check_output_paths
from edgeptm.sources import open_stage_source
from edgeptm.errors import UsageError
from edgeptm.profiles import Profile, pick, resolve_profile
from edgeptm.runtime.base import native_code
from edgeptm.targets.common import Target, TargetOptions

log = logging.getLogger(__name__)

# The options every target reads; anything else is a target's own (its options dataclass).
COMMON = (
    "target",
    "precision",  # the targets with precisions: --precision (default: the profile's, else fp32)
    "calib",  # targets that calibrate: calibration data (default: the artifact's training sample)
    "calib_samples",  # calibration inputs (default: the target's)
    "max_accuracy_drop",  # int8/bf16 of targets that quantize: points (default: the profile's)
    "max_batch",  # largest batch the engine accepts (default 32)
    "max_seq_len",  # text: longest sequence (default: the model's max length)
    "shapes",  # explicit NAME:MIN,OPT,MAX per input (trtexec's 1x128 notation)
    "validation_samples",
    "profile",
)


class CompileOptions:
    """Unset options come from the device profile's ``compile`` section, then edgeptm's defaults.
    Keywords beyond the common ones are the chosen target's own options (its options dataclass in
    ``edgeptm.targets.<name>``), checked against it when ``compile`` runs;
    ``settings`` holds them resolved, for the target's build."""

    def __init__(
        self,
        target: str | None = None,
        precision: str | None = None,
        calib: str | None = None,
        calib_samples: int | None = None,
        max_accuracy_drop: float | None = None,
        max_batch: int | None = None,
        max_seq_len: int | None = None,
        shapes: list[str] | None = None,
        validation_samples: int = 64,
        profile: str | Profile | None = None,
        **target_options: Any,
    ) -> None:
        self.target, self.precision, self.calib, self.calib_samples = target, precision, calib, calib_samples
        self.max_accuracy_drop, self.max_batch, self.max_seq_len = max_accuracy_drop, max_batch, max_seq_len
        self.shapes, self.validation_samples, self.profile = shapes, validation_samples, profile
        self.target_options = target_options
        self.settings: TargetOptions | None = None

    def __repr__(self) -> str:
        given = {k: getattr(self, k) for k in COMMON if getattr(self, k) is not None}
        return f"CompileOptions({given}, target_options={self.target_options})"

    def replace(self, **changes: Any) -> CompileOptions:
        new = copy.copy(self)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    def shape_sources(self) -> dict[str, Any]:
        """Arguments for ``shapes.shape_ranges``: --shapes, else --max-batch/--max-seq-len, else the profile."""
        from edgeptm.compile.shapes import DEFAULT_OPT_SEQ, parse_shapes

        section = self.profile.compile if isinstance(self.profile, Profile) else None
        batch = section.batch if section else None
        seq_len = section.seq_len if section else None
        if self.max_batch is not None:
            batch = (1, min(batch[1] if batch else 1, self.max_batch), self.max_batch)
        if self.max_seq_len is not None:
            opt = seq_len[1] if seq_len else DEFAULT_OPT_SEQ
            seq_len = (1, min(opt, self.max_seq_len), self.max_seq_len)
        return {
            "explicit": parse_shapes(self.shapes or []),
            "batch": batch,
            "seq_len": seq_len,
            "fit_seq_len": self.max_seq_len is None,  # a profile's range is cut to the model's length
        }


def _refuse_unowned(target: Target, options: CompileOptions) -> None:
    """Common options that mean something to some targets only: an error for the others."""
    quantizing = [t.name for t in targets.TARGETS.values() if t.precisions]
    calibrating = [t.name for t in targets.TARGETS.values() if t.default_calib_samples is not None]
    owners = {
        "precision": (quantizing, target.no_precision),
        "calib": (calibrating, target.no_calib),
        "calib_samples": (calibrating, target.no_calib),
        "max_accuracy_drop": (quantizing, ""),
    }
    for key, (names, why) in owners.items():
        if getattr(options, key) is not None and target.name not in names:
            raise UsageError(
                f"--{key.replace('_', '-')} is for --target {' or '.join(names)}, not {target.name}"
                + (f": {why}" if why else "")
            )
    if options.precision is not None and options.precision not in target.precisions:
        elsewhere = [t.name for t in targets.TARGETS.values() if options.precision in t.precisions]
        raise UsageError(
            f"--precision {options.precision}: {target.builds_as or target.title} builds "
            f"{', '.join(target.precisions)}"
            + (f" ({options.precision}: --target {' or '.join(elsewhere)})" if elsewhere else "")
        )
    for key in ("max_batch", "max_seq_len"):  # --calib-samples: tasks.draw_calibration checks it
        value = getattr(options, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if options.max_accuracy_drop is not None and options.max_accuracy_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0, got {options.max_accuracy_drop}")


def resolve(options: CompileOptions | None) -> tuple[Target, CompileOptions]:
    """The target and the options it builds with: explicit beats the profile's ``compile`` section,
    which beats the defaults; an option the target does not own is refused with one line."""
    options = options or CompileOptions()
    profile = resolve_profile(options.profile)
    section = profile.compile if profile else None
    target = targets.get(pick(options.target, section and section.target, targets.DEFAULT))
    _refuse_unowned(target, options)
    targets.target_options(target, options.target_options, flag=True)  # what was given, on its own
    explicit = {k: v for k, v in options.target_options.items() if v is not None}
    from_profile = dict(section.options) if section is not None and section.target == target.name else {}
    resolved = options.replace(target=target.name, profile=profile)
    resolved.settings = targets.target_options(target, {**from_profile, **explicit}, flag=True)
    return target, resolved


def compile(  # noqa: A001 - the stage is called compile, as in the CLI
    source: str | Path | Artifact, out: str | Path, options: CompileOptions | None = None, force: bool = False
) -> Artifact:
    """Compile an artifact for ``options.target``; the engine is validated before it is published."""
    target, options = resolve(options)
    profile = options.profile
    out = Path(out)
    files = options.settings.paths()  # a target's own files, read and written back (a timing cache)
    # What the stage reads, which --out (replaced with --force) may not touch.
    inputs = [options.calib, *files.values(), profile and profile.path]
    artifact = open_stage_source(
        source,
        out,
        force,
        f"compile --target {target.name}",
        target.accepts,
        lambda a: a.kind == target.compiles_from,
        inputs=inputs,
    )
    generator = artifact.task == "text-generation"
    if generator and not target.generator_build:
        able = [t.name for t in targets.TARGETS.values() if t.generator_build]
        raise UsageError(
            f"{artifact.path}: compile --target {target.name} does not build generators (--target "
            f"{' or '.join(able)} does; on ONNX Runtime: 'edgeptm export' then 'edgeptm quantize --mode int4')"
        )
    for key, path in files.items():  # the target writes it back: never over the source or into an artifact
        check_output_paths([path], f"--{key.replace('_', '-')}", [artifact.path])
    build = target.load("generator_build" if generator else "build")
    with ArtifactWriter(out, force=force, inputs=[artifact.path, *inputs]) as writer:
        manifest = build(artifact, writer, options)
        manifest["profile"] = profile.record() if profile else None
        engine = writer.finish("engine", manifest)
    native = native_code(engine)
    if native:  # built by this user here: its native code may load without 'edgeptm trust'
        try:
            trust.record(engine, "built here", native)
        except OSError as exc:  # a read-only home: the engine is fine, trusting it is left to the user
            log.warning("could not record %s as trusted (%s); run: edgeptm trust %s", out, exc.strerror, out)
    return engine


__all__ = ["COMMON", "CompileOptions", "compile", "resolve"]
