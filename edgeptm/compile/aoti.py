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


def _dynamic_shapes(artifact: Artifact, options: Any) -> tuple[dict[int, Any], ...]:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=max(2, options.max_batch))
    inputs = artifact.manifest["io"]["inputs"]
    if "max_length" not in artifact.preprocessing:  # images: only the batch varies
        return tuple({0: batch} for _ in inputs)
    limit = options.max_seq_len or int(artifact.preprocessing["max_length"])
    sequence = Dim("sequence", min=1, max=limit)
    return tuple({0: batch, 1: sequence} for _ in inputs)


def build(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    import torch

    from edgeptm.exporter import validate_against_torch
    from edgeptm.runtime.aoti_backend import AotiBackend
    from edgeptm.runtime.predictor import predictor_for
    from edgeptm.runtime.preprocess import preprocessor_for

    if options.device not in ("cpu", "cuda"):
        raise UsageError(f"--device {options.device}: AOTInductor targets cpu or cuda")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device visible to torch here; compile on the target machine")
    # "No CUDA runtime is found" from torch's C++ extension helper is noise on a CPU build.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    task = get_task(artifact.task)
    model = task.torch_model(artifact).to(options.device)
    preprocessor = preprocessor_for(artifact)
    val = carried_val_data(task, artifact)
    samples = val.inputs if val is not None else preprocessor.sample_inputs(options.validation_samples)
    feed = preprocessor.encode(samples[:2] if len(samples) >= 2 else samples * 2)
    names = [i["name"] for i in artifact.manifest["io"]["inputs"]]
    example = tuple(torch.from_numpy(feed[n]).to(options.device) for n in names)
    shapes = _dynamic_shapes(artifact, options)

    package = writer.add("model", "model.pt2")
    started = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(model, example, dynamic_shapes=shapes)
            torch._inductor.aoti_compile_and_package(program, package_path=str(package))
    except Exception as exc:  # torch.export / inductor errors come from deep inside torch
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"{artifact.path}: AOTInductor compile failed: {first[:300]}") from None
    seconds = time.perf_counter() - started
    writer.carry(artifact)
    bounds = {
        n: {axis: [dim.min, dim.max] for axis, dim in zip(("batch", "sequence"), spec.values())}
        for n, spec in zip(names, shapes)
    }
    manifest = {
        "task": artifact.task,
        "labels": artifact.labels,
        "model": artifact.manifest["model"],
        "io": artifact.manifest["io"],
        "preprocessing": artifact.preprocessing,
        "precision": artifact.manifest.get("precision", "fp32"),
        "parents": [artifact.as_parent()],
        "compile": {
            "target": "aoti",
            "tool": "torch.export + torch._inductor.aoti_compile_and_package",
            "torch": torch.__version__,
            "device": options.device,
            "dynamic_shapes": bounds,
            "compile_seconds": round(seconds, 1),
        },
    }
    staged = writer.preview("engine", manifest)
    with predictor_for(staged, AotiBackend(staged)) as predictor:
        reference = model.cpu()  # eager on the CPU is the reference, wherever the engine runs
        atol = float(artifact.manifest["model"].get("export_atol") or 1e-3)
        manifest["validation"], manifest["metrics"], _ = validate_against_torch(
            reference, predictor, samples[: options.validation_samples], val, atol, "AOTInductor package", artifact
        )
    check = manifest["validation"]
    log.info("compiled %s with AOTInductor in %.1f s: max |diff| %.2g", writer.out, seconds, check["max_abs_diff"])
    return manifest
