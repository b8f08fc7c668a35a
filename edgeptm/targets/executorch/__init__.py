"""ExecuTorch: a ``.pte`` program with the XNNPACK delegate compiled from the PyTorch checkpoint
(``build.py``), run by ``backend.py``. This module is the descriptor the registry reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeptm.targets.common import OptionError, Target, TargetOptions, option


PRECISIONS = ("fp32", "int8", "8da4w")  # 8da4w: generators only (generative.py)
DEFAULT_CALIB_SAMPLES = 100
# PT2E activation scales per task: text scales activations per call, images calibrate static scales.
SCHEMES = {"text-classification": "dynamic", "feature-extraction": "dynamic"}
_PRECISION_WORDS = {
    "fp32": "FP32 program, XNNPACK's float kernels",
    "8da4w": "generators: int4 weights in groups of 32 with int8 dynamic activations (torchao), static KV cache",
    "int8": "INT8 by PT2E with the XNNPACK quantizer in 'compile' (per-channel weights; images: static "
    "activation scales calibrated on {samples} samples; text: dynamic activations)",
}


@dataclass(frozen=True)
class ExecuTorchOptions(TargetOptions):
    device: str = option("cpu", "where the program runs: cpu", choices=("cpu", "cuda"))

    def combined(self) -> None:
        if self.device != "cpu":
            raise OptionError("device", f"{self.device}: the ExecuTorch XNNPACK target runs on CPUs only")


def calibrates(task: str, precision: str) -> bool:
    """INT8 with static activation scales (images) calibrates; text scales activations per call."""
    return precision == "int8" and SCHEMES.get(task, "static") == "static"


def check_runtime(options: Any) -> None:
    from edgeptm.targets.executorch._runtime import import_executorch

    import_executorch()


def check_profile(profile: Any) -> str | None:
    section = profile.compile
    if section.target == "executorch" and section.precision not in (None, *PRECISIONS):
        return f"compile.precision '{section.precision}': ExecuTorch's XNNPACK target builds {' or '.join(PRECISIONS)}"
    return None


def explain(profile: Any) -> dict[str, list[str]]:
    words = _PRECISION_WORDS[profile.compile.precision or "fp32"].format(samples=DEFAULT_CALIB_SAMPLES)
    return {
        "runtime": [
            "runtime: ExecuTorch with the XNNPACK delegate: 'compile' builds a .pte program from the PyTorch "
            "checkpoint; the app links the ExecuTorch runtime (Android, iOS, Linux boards)"
        ],
        "precision": [f"precision: {words}"],
    }


def summary(info: dict[str, Any]) -> tuple[str, str]:
    shapes = "static shapes" if info.get("static_shapes") else "dynamic shapes"
    if info.get("max_cache_len"):  # a generator's program
        shapes = f"static KV cache of {info['max_cache_len']} positions"
    delegate = info["delegate"]
    total = delegate["delegated_nodes"] + delegate["non_delegated_nodes"]
    return (
        f"ExecuTorch {info['executorch']} XNNPACK, {info['precision']}, {shapes}, "
        f"{delegate['delegated_nodes']} of {total} nodes delegated",
        "eager PyTorch",
    )


TARGET = Target(
    name="executorch",
    title="ExecuTorch",
    builds_as="ExecuTorch's XNNPACK target",
    compiles_from="checkpoint",
    accepts="a checkpoint artifact (PyTorch weights)",
    build="edgeptm.targets.executorch.build:build",
    generator_build="edgeptm.targets.executorch.generative:build_generator",
    backend="edgeptm.targets.executorch.backend:ExecuTorchBackend",
    summary=summary,
    explain=explain,
    help=(
        "--target executorch: SOURCE is a checkpoint artifact; a .pte program with the XNNPACK delegate (fp32, "
        "or int8 with PT2E; a generator: fp32 or 8da4w with a static KV cache of --max-seq-len positions), "
        "checked against eager PyTorch."
    ),
    options=ExecuTorchOptions,
    precisions=PRECISIONS,
    calibrates=calibrates,
    default_calib_samples=DEFAULT_CALIB_SAMPLES,
    build_from="checkpoint",
    check_runtime=check_runtime,
    check_profile=check_profile,
    packages=("executorch", "torchao"),
    install="executorch",
    rebuild_flags=lambda info: f" --precision {info.get('precision', 'fp32')}",
    recipes=lambda task, profile, shapes: [(p, "checkpoint", ["--precision", p]) for p in ("fp32", "int8")],
)
