"""AOTInductor: ``torch.export`` the checkpoint's module, compile it ahead of time into a ``.pt2``
package (C++/OpenMP kernels for the CPU, Triton for CUDA), with dynamic batch (and sequence) axes.

The package runs in any process that imports torch, of the same torch version: the manifest
records it, and the backend refuses a package built by another version instead of crashing.
Two traps (measured here): a batch-1 example specialises the batch dimension, so the example has
two samples; BERT-style models need an upper bound on the sequence dimension (their position
table), so it is the model's max length.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, UsageError
from edgeptm.tasks import carried_val_data, get_task

log = logging.getLogger(__name__)
CUDA_ATOL = 1e-2  # cuDNN/Triton pick other kernels than eager: sums in another order


def _dynamic_shapes(artifact: Artifact, options: Any) -> tuple[tuple[dict[int, Any], ...], dict[str, Any]]:
    """torch.export Dims for every dynamic axis (shared axes share one Dim), and the bounds recorded."""
    from torch.export import Dim

    from edgeptm.compile.shapes import axis_bounds, shape_ranges

    inputs = artifact.manifest["io"]["inputs"]
    ranges = shape_ranges(inputs, artifact.preprocessing, **options.shape_sources())
    bounds = axis_bounds(ranges, inputs)
    dims: dict[str, Any] = {}
    specs = []
    for entry in inputs:
        spec = {}
        for i, axis in enumerate(entry["shape"]):
            if isinstance(axis, int):
                continue
            low, high = bounds[entry["name"]][axis]
            # A batch of 1 would be specialised away: the example has 2 samples, so the range must hold 2.
            high = max(high, 2) if axis == "batch" else high
            dims.setdefault(axis, Dim(axis, min=low, max=high))
            spec[i] = dims[axis]
        specs.append(spec)
    return tuple(specs), bounds


def _gpu() -> dict[str, str]:
    """A CUDA package holds kernels for one GPU architecture: recorded so load() can check it."""
    import torch

    cc = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{cc[0]}.{cc[1]}", "cuda": torch.version.cuda}


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import torch

    from edgeptm.targets.engine import engine_manifest
    from edgeptm.exporter import validate_against_torch
    from edgeptm.targets.aoti.backend import AotiBackend
    from edgeptm.runtime.predictor import encode_within, predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    device = options.settings.device  # cpu | cuda, checked by AotiOptions
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device visible to torch here; compile on the target machine")
    # "No CUDA runtime is found" from torch's C++ extension helper is noise on a CPU build.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    task = get_task(artifact.task)
    model = task.torch_model(artifact).to(device)
    preprocessor = preprocessor_for(artifact)
    names = artifact.view.input_names
    shapes, bounds = _dynamic_shapes(artifact, options)
    val = carried_val_data(task, artifact)
    samples = val.inputs if val is not None else preprocessor.sample_inputs(options.validation_samples)
    sequence = bounds[names[0]].get("sequence") if names else None
    feed = encode_within(preprocessor, samples[:2] if len(samples) >= 2 else samples * 2, sequence)
    example = tuple(torch.from_numpy(feed[n]).to(device) for n in names)

    package = writer.add("model", "model.pt2")
    started = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(model, example, dynamic_shapes=shapes)
            torch._inductor.aoti_compile_and_package(program, package_path=str(package))
    except Exception as exc:  # torch.export / inductor errors come from deep inside torch
        lines = str(exc).splitlines() or [type(exc).__name__]
        # torch.export's constraint errors end with the Dim ranges it would accept: keep those.
        fixes = [line.strip() for line in lines if "Dim(" in line][:3]
        detail = lines[0][:300] + (" Suggested: " + "; ".join(fixes) if fixes else "")
        raise ExportError(f"{artifact.path}: AOTInductor compile failed: {detail}") from None
    seconds = time.perf_counter() - started
    writer.carry(artifact)
    manifest = engine_manifest(
        artifact,
        {
            "target": "aoti",
            "tool": "torch.export + torch._inductor.aoti_compile_and_package",
            "torch": torch.__version__,
            "device": device,
            **(_gpu() if device == "cuda" else {}),
            "dynamic_shapes": bounds,
            "compile_seconds": round(seconds, 1),
        },
    )
    staged = writer.preview("engine", manifest)
    with predictor_for(staged, AotiBackend(staged)) as predictor:
        # The reference is eager PyTorch on the same device, so the check measures the compiler:
        # on CUDA both sides use cuDNN's TF32 convolutions by default (10-bit mantissa), which moves
        # EfficientNet-Lite0 logits by ~1e-2 from FP32 CPU (measured on an H200).
        atol = float(artifact.manifest["model"].get("export_atol") or 1e-3)
        if device == "cuda":
            atol = max(atol, CUDA_ATOL)
        manifest["validation"], manifest["metrics"], _ = validate_against_torch(
            model,
            predictor,
            samples[: options.validation_samples],
            val,
            atol,
            "AOTInductor package",
            artifact,
            device=device,
        )
    check = manifest["validation"]
    if device == "cuda":
        check["tf32_convolutions"] = bool(torch.backends.cudnn.allow_tf32)
    log.info("compiled %s with AOTInductor in %.1f s: max |diff| %.2g", writer.out, seconds, check["max_abs_diff"])
    return manifest
