"""Compile: turn an artifact into an engine for one runtime (AOTInductor here; TensorRT to come).

Each target is a module with a ``build(artifact, out_dir, options) -> record`` function; the stage
around it is common: check the source fits the target, stage the engine in a temporary directory,
validate it against the parent on the parent's validation data, and write a manifest that records
where and how it was built, so ``load()`` can refuse an engine this machine cannot run.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgeptm.artifacts import Artifact, ArtifactWriter, open_stage_source
from edgeptm.errors import UsageError
from edgeptm.profiles import Profile, resolve_profile

log = logging.getLogger(__name__)

# target -> (module:function, the artifact kinds it compiles from, what they are in words)
TARGETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "aoti": ("edgeptm.compile.aoti:build", ("checkpoint",), "a checkpoint artifact (PyTorch weights)"),
}


@dataclass
class CompileOptions:
    target: str = "aoti"
    device: str = "cpu"  # aoti: cpu | cuda
    max_batch: int = 64  # largest batch the engine accepts (dynamic batch 1..max_batch)
    max_seq_len: int | None = None  # text: largest sequence (default: the model's max length)
    validation_samples: int = 64
    profile: str | Profile | None = None


def compile(  # noqa: A001 - the stage is called compile, as in the CLI
    source: str | Path | Artifact, out: str | Path, options: CompileOptions | None = None, force: bool = False
) -> Artifact:
    """Compile an artifact for ``options.target``; the engine is validated before it is published."""
    options = options or CompileOptions()
    if options.target not in TARGETS:
        raise UsageError(f"--target {options.target}: not one of {', '.join(TARGETS)}")
    target, kinds, accepts = TARGETS[options.target]
    if options.max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {options.max_batch}")
    out = Path(out)
    artifact = open_stage_source(
        source, out, force, f"compile --target {options.target}", accepts, lambda a: a.kind in kinds
    )
    profile = resolve_profile(options.profile)
    module_name, function = target.split(":")
    build = getattr(importlib.import_module(module_name), function)
    with ArtifactWriter(out, force=force) as writer:
        manifest = build(artifact, writer, options)
        manifest["profile"] = profile.record() if profile else None
        return writer.finish("engine", manifest)


__all__ = ["CompileOptions", "TARGETS", "compile"]
