"""The error family. Every error says what failed, why, and what to do about it.

The CLI turns any EdgeptmError into a one-line message on stderr and exit code 1 (2 for usage
errors, as click does); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeptmError(Exception):
    """Base of every error edgeptm raises on purpose."""


class UsageError(EdgeptmError):
    """An option or argument that cannot work (e.g. --out on a non-empty directory)."""


class ModelError(EdgeptmError):
    """An unknown model name, or a model source that cannot load here."""


class DataError(EdgeptmError):
    """Training/validation data that is missing, unreadable or inconsistent."""


class ProfileError(EdgeptmError):
    """A profile file that is missing, has unknown keys, or wrong types."""


class ArtifactError(EdgeptmError):
    """An artifact directory without a manifest, or whose files fail their checksums."""


class ExportError(EdgeptmError):
    """torch -> ONNX export failed, or the exported graph disagrees with PyTorch."""


class AccuracyError(EdgeptmError):
    """A quantized model lost more accuracy than allowed."""


class BackendError(EdgeptmError):
    """A runtime that is missing or cannot run the artifact."""


class RuntimeUnavailable(BackendError):
    """This machine lacks what a target needs to build or run (its package, a GPU): the one error
    ``build`` records as a skipped stage. An engine that was built and then fails is not this."""


class BenchError(EdgeptmError):
    """A benchmark that could not be run as asked."""


class UntrustedError(ArtifactError):
    """An artifact whose loading runs native code, and nobody said it may (or a pinned digest
    that does not match)."""
