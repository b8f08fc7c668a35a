"""The quantize stage for generators: weight-only INT4 / INT8 of the decoder graph, gated on perplexity.

``--mode int4``: every linear layer's weights in 4-bit blocks (asymmetric, 4-bit zero points;
``--symmetric`` for none; weights that already lie on a 4-bit grid are written exactly on it for the
widest matmuls, ``--grid-offsets``: see ``weight_only``), and the shared embedding / LM head table
in 4-bit blocks but for its first 2,048 token rows, which stay 8-bit (``--embedding-8bit-rows``;
``--embedding-bits 8`` keeps the whole table at 8 bits, as the GGUF SmolLM2 ships does: +1.7% against
+3.3% perplexity on SmolLM2, for ~10% slower decoding).
``--mode int8`` (or ``dynamic-int8``): every weight in 8-bit blocks. Activations are quantized to
int8 per block on the fly by the kernel (``--accuracy-level 4``: ONNX Runtime's fastest CPU path;
0 computes in float).

The quality gate is perplexity on the validation examples (their completion tokens), measured on
the parent graph and the quantized one in the same run; ``--max-perplexity-increase`` (percent)
refuses a result beyond it, writing nothing. Greedy continuations on real prompts are compared with
the parent's too (how many tokens agree), and recorded.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeptm.artifacts import Artifact, ArtifactWriter
from edgeptm.errors import AccuracyError, UsageError

log = logging.getLogger(__name__)

MODES = {"int4": 4, "int8": 8, "dynamic-int8": 8}
DEFAULT_BLOCK = 32
DEFAULT_8BIT_ROWS = 2048  # a 4-bit tied table's first token rows kept at 8 bits (see weight_only)
CALIB_TOKENS = 8192  # calibration tokens for the data-aware methods (16 windows of 512)
WINDOW = 512


def _calibration_ids(artifact: Artifact, options: Any, tokenizer: Any) -> tuple[list[int], str] | None:
    from edgeptm.tasks import get_task

    task = get_task(artifact.task)
    if options.calib:
        texts, source = task.read_calibration(options.calib), f"--calib {options.calib}"
    else:
        texts, source = task.calibration_inputs(artifact), "training examples carried by the checkpoint"
    if not texts:
        return None
    limit = int(options.calib_samples or CALIB_TOKENS)
    ids = tokenizer("\n".join(texts), add_special_tokens=False)["input_ids"][:limit]
    return ids, f"{source}, {len(ids)} tokens"


def _feeds(ids: list[int], shape: Any) -> Any:
    window = min(WINDOW, shape.context_length)
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window]
        n = len(chunk)
        if n < 2:
            break
        feed = {
            "input_ids": np.asarray([chunk], dtype=np.int64),
            "seqlens_k": np.asarray([n - 1], dtype=np.int32),
            "total_sequence_length": np.asarray(n, dtype=np.int32),
            "logits_to_keep": np.asarray([0], dtype=np.int64),
        }
        for name in shape.past_names():
            feed[name] = np.zeros((1, shape.kv_heads, n, shape.head_dim), dtype=np.float32)
        yield feed


def quantize_decoder(artifact: Artifact, out: Path, options: Any, force: bool, inputs: list[Any]) -> Artifact:
    import onnx

    from edgeptm.decoder import DECODE_STEPS, open_decoder, save_model, validation_set
    from edgeptm.models.causal import DecoderShape, load_lm_tokenizer
    from edgeptm.quantization.weight_only import METHODS, input_statistics, quantize_decoder_graph
    from edgeptm.tasks.generation import compare_decoders, perplexity_against

    mode = options.mode or "int4"
    if mode not in MODES:
        raise UsageError(f"--mode {mode}: a generator quantizes with int4, int8 or dynamic-int8")
    bits = MODES[mode]
    block = options.block_size or DEFAULT_BLOCK
    embedding_bits = options.embedding_bits or (4 if bits == 4 else 8)
    if embedding_bits not in (4, 8, 32):
        raise UsageError(f"--embedding-bits must be 4, 8 or 32, got {embedding_bits}")
    level = 4 if options.accuracy_level is None else options.accuracy_level
    if level not in (0, 1, 2, 3, 4):
        raise UsageError(f"--accuracy-level must be 0-4, got {level}")
    shape = DecoderShape.of(artifact.manifest["model"])
    tokenizer = load_lm_tokenizer(artifact)
    calibration = _calibration_ids(artifact, options, tokenizer)
    method = options.weight_method or "auto"
    if bits == 8:  # 8-bit blocks: round to nearest is within noise of every search (see weight_only)
        if method not in ("auto", "rtn"):
            raise UsageError(f"--weight-method {method} is for int4; int8 rounds to nearest")
        method, calibration = "rtn", None
    elif method == "auto":
        method = "imatrix" if calibration else "search"
    if method not in METHODS:
        raise UsageError(f"--weight-method {method}: not one of auto, {', '.join(METHODS)}")
    if method in ("imatrix", "gptq") and calibration is None:
        raise UsageError(
            f"{artifact.path}: --weight-method {method} needs calibration text and the artifact carries none: "
            "pass --calib FILE (JSONL or plain text)"
        )
    started = time.perf_counter()
    graph = onnx.load(str(artifact.file("model")))
    statistics = None
    if calibration is not None and method in ("imatrix", "gptq"):
        statistics = input_statistics(graph, _feeds(calibration[0], shape))
    symmetric = bool(options.symmetric) or bits == 8
    grid_offsets = options.grid_offsets or "widest"
    form = "symmetric" if symmetric else "asymmetric"
    rows8 = DEFAULT_8BIT_ROWS if options.embedding_8bit_rows is None else options.embedding_8bit_rows
    counts = quantize_decoder_graph(
        graph, bits, block, method, embedding_bits, level, statistics, symmetric, grid_offsets, rows8
    )
    seconds = time.perf_counter() - started
    check = validation_set(artifact, tokenizer, 4, options.val)
    with ArtifactWriter(out, force=force, inputs=inputs) as writer:
        path = writer.add("model", "model.onnx")
        save_model(graph, path)
        writer.carry(artifact)
        parent, child = open_decoder(artifact.file("model"), shape), open_decoder(path, shape)
        agreement = compare_decoders(parent, child, check["prompts"], DECODE_STEPS)
        metrics: dict[str, Any] = {"perplexity": None, "note": "no validation data: pass --val FILE"}
        if check["encoded"]:
            metrics = perplexity_against(parent, child, check["encoded"])
            increase = metrics["perplexity_increase_pct"]
            limit = options.max_perplexity_increase
            if limit is not None and increase > limit:
                raise AccuracyError(
                    f"{mode}: perplexity {metrics['perplexity']:.3f} is {increase:.2f}% above the parent's "
                    f"{metrics['parent_perplexity']:.3f} (--max-perplexity-increase {limit:g}%); nothing written. "
                    "Try --weight-method imatrix with --calib, --embedding-bits 8, or --mode int8"
                )
        elif options.max_perplexity_increase is not None:
            raise UsageError(f"{artifact.path}: --max-perplexity-increase needs validation examples; pass --val FILE")
        return writer.finish(
            "onnx",
            {
                "task": "text-generation",
                "labels": [],
                "model": dict(artifact.manifest["model"]),
                "io": artifact.manifest["io"],
                "preprocessing": artifact.preprocessing,
                "precision": f"int{bits}-weight-only",
                "parents": [artifact.as_parent()],
                "export": artifact.manifest.get("export"),
                "quantization": {
                    "mode": mode,
                    "weights": f"MatMulNBits, {bits}-bit {form} blocks of {block}",
                    "zero_points": not symmetric,
                    "grid_offsets_mode": grid_offsets if bits == 4 else "none",
                    "bits": bits,
                    "block_size": block,
                    "method": method,
                    "embedding_bits": embedding_bits,
                    "accuracy_level": level,
                    "calibration": calibration[1] if calibration and statistics is not None else None,
                    **counts,
                    "seconds": round(seconds, 1),
                },
                "validation": {**agreement, "against": "parent ONNX graph", "on": check["source"]},
                "metrics": metrics,
            },
        )
