"""ONNX Runtime Mobile: the ORT format (``.ort``, a FlatBuffer ONNX Runtime's mobile and minimal
builds load without protobuf) converted from an ONNX artifact by onnxruntime's own converter, with
the operator/type configuration a reduced ONNX Runtime build for Android/iOS is compiled from
(``build.py``); run by ``backend.py`` (the full onnxruntime package loads ``.ort`` files too).
This module is the descriptor the registry reads; it imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeptm.targets.common import Target, TargetOptions, option

PLATFORMS = ("arm", "amd64")


@dataclass(frozen=True)
class OrtMobileOptions(TargetOptions):
    platform: str = option(
        "arm",
        "the CPU the .ort runs on (its graph optimizations are baked in for it: arm keeps INT8 Q/DQ fusions "
        "phones run, amd64 x86 layouts)",
        choices=PLATFORMS,
    )
    type_reduction: bool = option(
        True, "the operator config also lists the types each operator needs (a smaller reduced build)"
    )


def check_runtime(options: Any) -> None:
    from edgeptm.targets.ort_mobile.build import import_converter

    import_converter()


def explain(profile: Any) -> dict[str, list[str]]:
    settings = profile.compile.settings_for("ort-mobile") or OrtMobileOptions()
    return {
        "runtime": [
            "runtime: ONNX Runtime Mobile: 'compile' converts the ONNX (the INT8 one 'build' quantizes) into the "
            f"ORT format (.ort, optimized for {settings.platform}) with the operator config a reduced ONNX Runtime "
            "build for Android/iOS is compiled from; the app links that build"
        ]
    }


def summary(info: dict[str, Any]) -> tuple[str, str]:
    config = info["operator_config"]
    return (
        f"ONNX Runtime {info['onnxruntime']} ORT format for {info['platform']}, {config['operators']} operator "
        f"kinds in {config['path']}",
        "ONNX Runtime (the ONNX)",
    )


TARGET = Target(
    name="ort-mobile",
    title="ONNX Runtime Mobile",
    compiles_from="onnx",
    accepts="an ONNX artifact (FP32, FP16 or INT8)",
    build="edgeptm.targets.ort_mobile.build:build",
    backend="edgeptm.targets.ort_mobile.backend:OrtMobileBackend",
    summary=summary,
    explain=explain,
    help=(
        "--target ort-mobile: SOURCE is an ONNX artifact (FP32, or INT8 from 'quantize'); ONNX Runtime's ORT "
        "format (.ort) for Android/iOS and small boards, optimized for --platform arm (or amd64), with the "
        "operator/type config a reduced ONNX Runtime build takes (--include_ops_by_config), checked against "
        "ONNX Runtime running the ONNX."
    ),
    options=OrtMobileOptions,
    no_precision="ONNX Runtime Mobile keeps the precision of the ONNX graph it is given (quantize it first)",
    no_calib="the ORT format keeps the graph's quantization; calibrate with 'quantize --mode static-int8 --calib'",
    build_from="quantize",
    check_runtime=check_runtime,
    packages=(),  # onnxruntime: the base runtime, always recorded
    install="onnxruntime",
    not_searched="the ORT format runs ONNX Runtime's own kernels on the ONNX graph it is made from: optimize times "
    "those graphs; compile the chosen one with --target ort-mobile for a phone",
)
