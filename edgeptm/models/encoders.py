"""What edgeptm knows about each family of text encoders (``config.model_type``): how to load it,
how to pool it, and what ONNX Runtime should fuse, keep off and quantize. Kept apart from
``text.py`` (the specs) and ``classifier.py`` (the torch module), which both read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class EncoderFamily:
    """What edgeptm knows about one ``config.model_type``; unknown types still work, unoptimised."""

    ort_model_type: str | None = None  # onnxruntime.transformers optimizer model_type (fusions)
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # extra AutoModel kwargs
    # FusionOptions attributes to change from ONNX Runtime's defaults for this family.
    ort_fusion_overrides: dict[str, Any] = field(default_factory=dict)
    # ONNX Runtime session-level graph rewrites to keep off (recorded in the artifact's manifest).
    ort_disabled_optimizers: tuple[str, ...] = ()
    # Dynamic INT8 op types: the MatMuls and ORT's fused Attention (-> QAttention) carry the compute;
    # the embedding tables (Gather, or the fused EmbedLayerNormalization) are half of a small BERT's
    # weights. Measured on fine-tuned MiniLM: 58.6 MB -> 22.8 MB, same latency, accuracy 0.827 ->
    # 0.833 on 1,000 held-out sentences (FP32 0.828): noise-level, and the accuracy guard checks it.
    dynamic_quant_ops: tuple[str, ...] = ("MatMul", "Attention", "Gather", "EmbedLayerNormalization")
    # Static QDQ on every op type wrecks a fine-tuned MiniLM (0.827 -> 0.634 measured: LayerNorm,
    # Softmax and GELU inputs have outliers no 8-bit grid holds); on the weight MatMuls only it kept
    # 0.815. The accuracy guard catches what remains.
    static_quant_ops: tuple[str, ...] | None = ("MatMul", "Gemm")
    static_extra_options: dict[str, Any] = field(default_factory=dict)


_NO_POOLER = {"add_pooling_layer": False}  # the head uses our pooling; BERT's pooler would be dead weight
# ONNX Runtime 1.31's CPU SkipLayerNormalization kernel is ~5x slower than LayerNormalization + Add
# on a [1, 128, 384] input (144 us vs 29 us, 2 threads), so MiniLM INT8 ran ~1-1.5 ms (12%) faster
# at batch 1, seq 128 with that fusion off, both in the offline optimizer and in the session.
_BERT_LIKE = dict(
    ort_model_type="bert",
    ort_fusion_overrides={"enable_skip_layer_norm": False},
    ort_disabled_optimizers=("SkipLayerNormFusion",),
)
FAMILIES: dict[str, EncoderFamily] = {
    "bert": EncoderFamily(load_kwargs=_NO_POOLER, **_BERT_LIKE),
    "roberta": EncoderFamily(load_kwargs=_NO_POOLER, **_BERT_LIKE),
    "xlm-roberta": EncoderFamily(load_kwargs=_NO_POOLER, **_BERT_LIKE),
    "distilbert": EncoderFamily(**_BERT_LIKE),
    "electra": EncoderFamily(**_BERT_LIKE),
}


def family_of(model_type: str) -> EncoderFamily:
    return FAMILIES.get(model_type, EncoderFamily())
