"""The machine and software a result was produced on: recorded in every manifest and report."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

# The CPU flags that decide which kernels a runtime can use (VNNI: INT8 dot products).
_INTERESTING_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
    "bf16",
)
_PACKAGES = (
    "edgeptm",
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "pillow",
)


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and model in ("unknown", "", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, [f for f in _INTERESTING_FLAGS if f in flags]


def package_versions() -> dict[str, str]:
    versions = {}
    from edgeptm import targets

    for name in (*_PACKAGES, *targets.packages()):  # the targets' runtimes: their descriptors list them
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as the driver reports them (nvidia-smi; no CUDA library is loaded)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    fields = ("name", "driver_version", "compute_cap", "memory.total")
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[v.strip() for v in line.split(",")] for line in out.strip().splitlines()]
    return [dict(zip(("name", "driver", "compute_capability", "memory"), row)) for row in rows if len(row) == 4]


@lru_cache(maxsize=1)
def describe() -> dict[str, Any]:
    model, flags = _cpuinfo()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "gpus": gpus(),
        "packages": package_versions(),
    }


def describe_lines(env: dict[str, Any]) -> list[str]:
    """A ``describe()`` record as the two lines benchmark scripts print under their tables."""
    return [
        f"cpu: {env['cpu']} ({', '.join(env['cpu_flags'])}), {env['cpu_count']} cores",
        "packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
    ]


def _not_torchao_enum_notice(record: Any) -> bool:
    return "register_constant() on Enum" not in record.getMessage()


def silence_known_warnings() -> None:
    """transformers and a target's compiler import torchao when it is installed, and torch deprecates
    torchao's Enum registrations with two warnings per process: noise about third-party internals,
    not about the user's model. Entry points (the CLI, bench workers) and that target's imports call
    this; the filter is installed once however often it is called."""
    import logging

    logging.getLogger("torch.utils._pytree").addFilter(_not_torchao_enum_notice)
