"""edgeptm: take a pretrained model to a device: fine-tune, export, quantize, benchmark, load.

The public API; heavy modules load on first use, so ``import edgeptm`` stays instant.

    import edgeptm
    ckpt = edgeptm.finetune(edgeptm.FinetuneOptions(model="minilm-l6", train="train.csv"), "runs/ckpt")
    onnx = edgeptm.export(ckpt, "runs/onnx")
    int8 = edgeptm.quantize(onnx, "runs/int8", edgeptm.QuantizeOptions(max_accuracy_drop=1.0))
    report = edgeptm.bench([ckpt.path, onnx.path, int8.path])
    edgeptm.load("runs/int8").predict(["a gripping film"])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "edgeptm.runtime:load",
    "finetune": "edgeptm.finetuning:finetune",
    "FinetuneOptions": "edgeptm.finetuning:FinetuneOptions",
    "export": "edgeptm.exporter:export",
    "ExportOptions": "edgeptm.exporter:ExportOptions",
    "quantize": "edgeptm.quantization:quantize",
    "QuantizeOptions": "edgeptm.quantization:QuantizeOptions",
    "compile": "edgeptm.compile:compile",
    "build": "edgeptm.build:build",
    "BuildOptions": "edgeptm.build:BuildOptions",
    "CompileOptions": "edgeptm.compile:CompileOptions",
    "bench": "edgeptm.benchmarking:bench",
    "BenchOptions": "edgeptm.benchmarking:BenchOptions",
    "open_artifact": "edgeptm.artifacts:open_artifact",
    "Artifact": "edgeptm.artifacts:Artifact",
    "trust_artifact": "edgeptm.trust:record",
    "UntrustedError": "edgeptm.errors:UntrustedError",
    "load_profile": "edgeptm.profiles:load_profile",
    "list_profiles": "edgeptm.profiles:list_profiles",
    "list_models": "edgeptm.models:list_sources",
    "EdgeptmError": "edgeptm.errors:EdgeptmError",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeptm' has no attribute '{name}'")
    module, attr = _EXPORTS[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
