"""OpenVINO: an IR (fp32, bf16, or INT8 by NNCF or from Q/DQ) from an ONNX artifact for OpenVINO's
CPU plugin (``build.py``), run by ``backend.py``. This module is the descriptor the registry reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeptm.targets.common import Target, TargetOptions, option


PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_CALIB_SAMPLES = 300  # NNCF's own default subset size; 100 gives the same MiniLM accuracy here
_PRECISION_WORDS = {
    "fp32": "FP32 IR (OpenVINO runs f32)",
    "bf16": "bf16 inference hint: weights stay FP32 in the IR, the CPU computes in bf16 where it has "
    "AVX512_BF16 or AMX (slower than FP32 without AMX)",
    "int8": "NNCF post-training INT8 in 'compile', calibrated on {samples} samples of the checkpoint's training "
    "sample (text: the transformer scheme with SmoothQuant; images: per-tensor activation ranges)",
}


def check_runtime(options: Any) -> None:
    from edgeptm.targets.openvino._runtime import import_openvino

    import_openvino()


def explain(profile: Any) -> dict[str, list[str]]:
    samples = profile.quantize.calibration_samples or DEFAULT_CALIB_SAMPLES  # NNCF takes the profile's
    return {
        "runtime": [
            "runtime: OpenVINO: 'compile' converts the plain ONNX export into an IR (model.xml + model.bin) for "
            "its CPU plugin, which fuses and specialises kernels on its own; the IR runs on any x86-64 machine "
            "with OpenVINO"
        ],
        "precision": [f"precision: {_PRECISION_WORDS[profile.compile.precision or 'fp32'].format(samples=samples)}"],
    }


def summary(info: dict[str, Any]) -> tuple[str, str]:
    shapes = "static shapes" if info.get("static_shapes") else "dynamic shapes"
    return (
        f"OpenVINO {info['openvino']}, {info['precision']} running {info.get('inference_precision')}, {shapes}",
        "ONNX Runtime",
    )


@dataclass(frozen=True)
class OpenVinoOptions(TargetOptions):
    fallback: str = option(
        "none",
        "int8: auto drives NNCF's accuracy control (quantize_with_accuracy_control): the layers that cost "
        "most accuracy on the validation split are reverted to float until --max-accuracy-drop holds",
        choices=("none", "auto"),
    )

    def combined(self) -> None:
        return None


def recipes(task: str, profile: Any, shapes: dict[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    """optimize's OpenVINO builds: FP32 and NNCF INT8 from the FP32 export, with static shapes (one
    request) and, for text, dynamic ones too; bf16 where the CPU has bf16 instructions; INT8 with NNCF's
    accuracy control."""
    precisions = ["fp32", "int8"]
    if set(profile.device.cpu_flags or ()) & {"avx512_bf16", "amx_bf16"}:
        precisions.append("bf16")
    found = []
    for precision in precisions:
        found.append((f"{precision} static shapes", "fp32", ["--precision", precision, *shapes["static"]]))
        if task == "text-classification":
            found.append((f"{precision} dynamic shapes", "fp32", ["--precision", precision, *shapes["dynamic"]]))
    fallback = ["--precision", "int8", "--fallback", "auto", *shapes["static"]]
    found.append(("int8 static shapes, fallback auto", "fp32", fallback))
    return found


TARGET = Target(
    name="openvino",
    title="OpenVINO",
    compiles_from="onnx",
    accepts="an ONNX artifact",
    build="edgeptm.targets.openvino.build:build",
    backend="edgeptm.targets.openvino.backend:OpenVinoBackend",
    summary=summary,
    explain=explain,
    help=(
        "--target openvino: SOURCE is an ONNX artifact; an OpenVINO IR in fp32, bf16 or int8 (NNCF, or the "
        "Q/DQ graph as it is), static when the shapes are fixed, checked against ONNX Runtime."
    ),
    precisions=PRECISIONS,
    calibrates=lambda task, precision: precision == "int8",
    default_calib_samples=DEFAULT_CALIB_SAMPLES,
    build_from="export",  # NNCF quantizes the FP32 export itself
    check_runtime=check_runtime,
    packages=("openvino", "nncf"),
    install="openvino",
    options=OpenVinoOptions,
    rebuild_flags=lambda info: f" --precision {info['precision_asked']}" if info.get("precision_asked") else "",
    recipes=recipes,
    intermediates="edgeptm.targets.openvino.intermediates:tensors",
)
