"""AOTInductor: a ``.pt2`` package compiled ahead of time from the PyTorch checkpoint (``build.py``),
run by ``backend.py``. This module is the descriptor the registry reads; it imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeptm.errors import RuntimeUnavailable
from edgeptm.targets.common import Target, TargetOptions, option


@dataclass(frozen=True)
class AotiOptions(TargetOptions):
    device: str = option("cpu", "where the package runs: cpu or cuda", choices=("cpu", "cuda"))


def check_runtime(options: Any) -> None:
    import torch

    if options.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable("AOTInductor for CUDA needs an NVIDIA GPU, and torch sees none here")


def explain(profile: Any) -> dict[str, list[str]]:
    device = (profile.compile.settings_for("aoti") or AotiOptions()).device
    return {
        "runtime": [f"runtime: AOTInductor: 'compile' builds a .pt2 package from the PyTorch checkpoint ({device})"]
    }


def summary(info: dict[str, Any]) -> tuple[str, str]:
    return f"{info.get('device', 'cpu')}, torch {info.get('torch')}", "eager PyTorch"


TARGET = Target(
    name="aoti",
    title="AOTInductor",
    compiles_from="checkpoint",
    accepts="a checkpoint artifact (PyTorch weights)",
    build="edgeptm.targets.aoti.build:build",
    backend="edgeptm.targets.aoti.backend:AotiBackend",
    native_code="edgeptm.targets.aoti.backend:native_code",
    summary=summary,
    explain=explain,
    help=(
        "--target aoti: SOURCE is a checkpoint artifact or a registered model name; torch.export + "
        "AOTInductor -> a .pt2 package (CPU, or CUDA with --device cuda), dynamic batch (and sequence), "
        "checked against eager PyTorch; loads with the same torch version."
    ),
    options=AotiOptions,
    no_precision="AOTInductor compiles the checkpoint's FP32 weights as they are",
    build_from="checkpoint",
    check_runtime=check_runtime,
    install="torch",
    rebuild_flags=lambda info: " --device cuda" if info.get("device") == "cuda" else "",
    devices=("cpu", "gpu", "jetson"),
    recipes=lambda task, profile, shapes: [
        ("fp32", "checkpoint", [] if profile.device.family == "cpu" else ["--device", "cuda"])
    ],
)
