"""ExecuTorch programs for generators: a causal LM checkpoint as one ``.pte`` with a static KV cache,
lowered to XNNPACK, for phones and ARM boards (``edgeptm compile CKPT --target executorch``).

The model is wrapped by transformers' ``TorchExportableModuleWithStaticCache`` (the recipe
optimum-executorch uses): the KV cache is a set of buffers of ``max_cache_len`` positions inside the
program, written in place, and the program's one method takes ``input_ids`` [1, T] and
``cache_position`` [T] (T from 1, a decode step, to the cache's length, a prefill) and returns the
logits of those T positions. A request restarts at position 0; positions past it are masked, so the
cache is never cleared.

Precisions: ``fp32``, or ``8da4w`` (torchao's ``Int8DynamicActivationIntxWeightConfig``: 4-bit
weights in groups of 32 along the input, symmetric, activations quantized to int8 per token on each
call: the scheme XNNPACK runs 4-bit LLMs with on ARM and x86). The embedding stays float.

``torch.export`` runs in strict mode (TorchDynamo): in non-strict mode the exported static-cache
program fails ExecuTorch's decomposition pass in torch 2.14 ("expected compiled_fn to be
GraphModule"), measured here.

The program is validated against eager PyTorch running the checkpoint before it is published: the
largest logit difference over the prefill and the decode steps and the greedy tokens on real
prompts (fp32: within the decoder export's tolerance and identical tokens, else nothing is written),
and perplexity on the validation examples against the checkpoint's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.errors import ExportError, UsageError
from edgeptm.profiles import pick
from edgeptm.targets.executorch._runtime import import_executorch

log = logging.getLogger(__name__)

GENERATOR_PRECISIONS = ("fp32", "8da4w")
DEFAULT_CACHE = 1024  # positions of the static KV cache unless --max-seq-len says otherwise
GROUP = 32  # 8da4w: weights per group (one scale each)


def resolve_generator_precision(options: Any) -> str:
    section = options.profile.compile if getattr(options.profile, "compile", None) else None
    precision = pick(options.precision, section and section.precision, "fp32")
    if precision == "int8":
        raise UsageError(
            "--precision int8: a generator's ExecuTorch program takes fp32 or 8da4w (8-bit dynamic activations, "
            "4-bit weights)"
        )
    if precision not in GENERATOR_PRECISIONS:
        raise UsageError(
            f"--precision {precision}: a generator's ExecuTorch program takes {', '.join(GENERATOR_PRECISIONS)}"
        )
    return precision


def _refuse_unused(options: Any) -> None:
    for flag, value in (
        ("--calib", options.calib),
        ("--calib-samples", options.calib_samples),
        ("--max-batch", options.max_batch),
        ("--shapes", options.shapes),
        ("--max-accuracy-drop", options.max_accuracy_drop),
    ):
        if value:
            raise UsageError(
                f"{flag}: a generator's ExecuTorch program has batch 1 and one dynamic length (--max-seq-len, its "
                "KV cache), needs no calibration (dynamic activations) and is checked by perplexity"
            )


def build_generator(artifact: Artifact, writer: Any, options: Any) -> dict[str, Any]:
    """Compile a causal LM checkpoint to a ``.pte`` with a static KV cache (see module docstring)."""
    import torch

    from edgeptm.decoder import DECODE_STEPS, LOGIT_ATOL, validation_set
    from edgeptm.models.causal import DecoderShape, load_lm, load_lm_tokenizer
    from edgeptm.runtime.generator import TorchDecoder
    from edgeptm.targets.engine import engine_manifest
    from edgeptm.targets.executorch.backend import ExecuTorchBackend, quiet_import
    from edgeptm.targets.executorch.build import _failed, lower_to_program
    from edgeptm.tasks.generation import compare_decoders, perplexity_against

    version = import_executorch()
    precision = resolve_generator_precision(options)
    _refuse_unused(options)
    shape = DecoderShape.of(artifact.manifest["model"])
    cache = int(options.max_seq_len or min(DEFAULT_CACHE, shape.context_length))
    if not 2 <= cache <= shape.context_length:
        raise UsageError(f"--max-seq-len {cache}: the KV cache must hold 2..{shape.context_length} positions")
    with quiet_import():
        from transformers.integrations.executorch import TorchExportableModuleWithStaticCache

    model = load_lm(artifact).float().eval()
    model.generation_config.cache_implementation = "static"
    record: dict[str, Any] = {
        "target": "executorch",
        "tool": "transformers TorchExportableModuleWithStaticCache + torch.export (strict) + "
        "executorch.exir.to_edge_transform_and_lower(XnnpackPartitioner) + to_executorch",
        "executorch": version,
        "torch": torch.__version__,
        "device": "cpu",
        "precision": precision,
        "max_cache_len": cache,
        "static_shapes": False,
        "shapes": {"input_ids": {"min": [1, 1], "max": [1, cache]}},
        "inputs": ["input_ids [1, T]", "cache_position [T]"],
    }
    started = time.perf_counter()
    with quiet_import(keep_warnings=True), torch.no_grad():
        if precision == "8da4w":
            from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
            from torchao.quantization.granularity import PerGroup

            odd = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.in_features % GROUP]
            if odd:
                raise UsageError(
                    f"8da4w groups {GROUP} input features; {odd[0]} has {model.get_submodule(odd[0]).in_features}"
                )
            try:
                quantize_(
                    model,
                    Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP)),
                )
            except Exception as exc:
                raise _failed(artifact, "torchao 8da4w quantization", exc) from None
            record["quantization"] = {
                "method": "torchao Int8DynamicActivationIntxWeightConfig: int4 weights, symmetric, groups of "
                f"{GROUP} along the input; int8 activations per token, per call; the embedding float",
            }
        wrapped = TorchExportableModuleWithStaticCache(model, batch_size=1, max_cache_len=cache)
        ids = torch.zeros((1, 4), dtype=torch.long)
        length = torch.export.Dim("tokens", min=1, max=cache)
        try:
            program = torch.export.export(
                wrapped,
                args=(),
                kwargs={"input_ids": ids, "cache_position": torch.arange(4, dtype=torch.long)},
                dynamic_shapes={"input_ids": {1: length}, "cache_position": {0: length}},
                strict=True,
            )
        except Exception as exc:
            raise _failed(artifact, "torch.export", exc) from None
        buffer = lower_to_program(artifact, program, record)
    record["compile_seconds"] = round(time.perf_counter() - started, 1)
    writer.add("model", "model.pte").write_bytes(buffer)
    writer.carry(artifact)
    manifest = engine_manifest(artifact, record)
    manifest["precision"] = precision
    staged = writer.preview("engine", manifest)

    tokenizer = load_lm_tokenizer(artifact)
    check = validation_set(artifact, tokenizer, 4, None)
    reference = TorchDecoder(load_lm(artifact).float().eval())  # the float checkpoint, not the quantized copy
    backend = ExecuTorchBackend(staged)
    # what fits the program's cache (the examples and prompts longer than it are left out, and counted)
    encoded = [e for e in check["encoded"] or [] if len(e[0]) <= cache]
    prompts = [p for p in check["prompts"] if len(p) + DECODE_STEPS <= cache]
    if not prompts:
        raise UsageError(
            f"--max-seq-len {cache}: no validation prompt fits the KV cache with {DECODE_STEPS} new tokens"
        )
    try:
        candidate = backend.decoder()
        agreement = compare_decoders(reference, candidate, prompts, DECODE_STEPS)
        metrics: dict[str, Any] = {
            "perplexity": None,
            "note": "no validation examples carried (or none fits the cache)",
        }
        if encoded:
            metrics = {
                **perplexity_against(reference, candidate, encoded),
                "val_examples_longer_than_cache": len(check["encoded"] or []) - len(encoded),
                "measured_with": backend.name,
            }
    finally:
        backend.close()
    if precision == "fp32" and (
        agreement["max_abs_logit_diff"] > LOGIT_ATOL or agreement["greedy_tokens_agreeing"] < agreement["greedy_tokens"]
    ):
        raise ExportError(
            f"{artifact.path}: the ExecuTorch fp32 program strays from eager PyTorch (largest logit difference "
            f"{agreement['max_abs_logit_diff']:.2e} > {LOGIT_ATOL}, greedy tokens agreeing "
            f"{agreement['greedy_tokens_agreeing']}/{agreement['greedy_tokens']}); nothing written"
        )
    manifest["validation"] = {
        **agreement,
        "against": "torch-eager fp32 (parent checkpoint)",
        "on": check["source"],
        **({"gate": {"max_abs_logit_diff": LOGIT_ATOL, "greedy": "identical"}} if precision == "fp32" else {}),
    }
    manifest["metrics"] = metrics
    log.info(
        "compiled %s with ExecuTorch %s (XNNPACK, %s, KV cache %d) in %.1f s",
        writer.out,
        version,
        precision,
        cache,
        record["compile_seconds"],
    )
    return manifest
