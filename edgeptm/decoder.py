"""A causal LM as one ONNX decoder graph with its KV cache, for ONNX Runtime.

One graph serves prefill and decode. Its inputs:

- ``input_ids`` [batch, sequence] int64: the prompt (prefill) or the last token (decode);
- ``past_key_values.{i}.key|value`` [batch, kv_heads, max_sequence, head_dim] float32: the cache,
  allocated once per request at the longest length it will reach. The graph's
  ``present.{i}.key|value`` outputs are the same buffers (ONNX Runtime's GroupQueryAttention
  writes the new positions in place when past and present share memory): nothing is copied or
  re-allocated per token;
- ``seqlens_k`` [batch] int32 (tokens in the cache after this step, less one) and
  ``total_sequence_length`` (a scalar int32), which GroupQueryAttention reads to place the new
  keys, rotate them (rotary positions are applied inside the operator) and mask the rest;
- ``logits_to_keep`` [1] int64: logits for the last k positions only (1 for generation, whose
  prefill would otherwise spend ~a third of its time on a 64 x vocabulary projection it discards),
  0 for every position (perplexity, validation).

Why these fused operators and not the exporter's standard-operator graph with a growing,
concatenated cache: ONNX Runtime GenAI, the fastest peer on CPU, runs this very layout
(GroupQueryAttention over a shared buffer, MatMulNBits once quantized), and a concatenating cache
costs a copy of every layer's cache per generated token. The graph is written from the weights
(the layout of :data:`edgeptm.models.causal.DECODER_FAMILIES`), and validated against PyTorch by
the exporter: prefill logits, decode steps, greedy continuations and perplexity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeptm.errors import ExportError
from edgeptm.models.causal import DECODER_FAMILIES, DecoderShape, context_length, kv_heads

OPSET = 17
IR_VERSION = 8  # what ONNX Runtime 1.20+ reads
MS_DOMAIN = "com.microsoft"
# the gated MLP's activation (config.hidden_act, or Gemma's hidden_activation): SiLU, or GELU's tanh form
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")


def check_supported(model: Any) -> None:
    """Refuse, with the reason, a model whose layout this graph does not implement."""
    config = model.config
    family = config.model_type
    if family not in DECODER_FAMILIES:
        raise ExportError(
            f"model type '{family}': edgeptm writes the ONNX decoder for {', '.join(DECODER_FAMILIES)}; "
            "this one runs in PyTorch only"
        )
    if family == "gpt2":
        act = getattr(config, "activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise ExportError(f"gpt2 with activation_function '{act}': the decoder graph implements GELU only")
        if getattr(config, "scale_attn_by_inverse_layer_idx", False) or getattr(config, "add_cross_attention", False):
            raise ExportError("gpt2: per-layer attention scaling and cross-attention are not implemented by the graph")
        return
    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
    if act not in ACTIVATIONS:
        raise ExportError(
            f"model type '{family}' with hidden_act '{act}': the decoder graph implements {', '.join(ACTIVATIONS)}"
        )
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type in ("longrope", "dynamic"):
        raise ExportError(
            f"{family}: '{rope_type}' rotary scaling changes with the sequence length; the graph's rotary tables "
            "are fixed"
        )
    if float(rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0) < 1.0:
        raise ExportError(f"{family}: partial rotary embeddings are not implemented by the decoder graph")
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) and window < context_length(config):
        raise ExportError(f"{family}: sliding-window attention ({window} tokens) is not implemented by the graph")
    if getattr(config, "mlp_bias", False):
        raise ExportError(f"{family}: MLP biases are not implemented by the decoder graph")


class _Graph:
    """Collects nodes and initializers; names are unique by construction."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs: Any) -> Any:
        from onnx import helper

        self._n += 1
        names = outputs if isinstance(outputs, list) else [f"{op_type.lower()}_{self._n}_{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{op_type}_{self._n}", domain=domain, **attrs))
        return names[0] if len(names) == 1 else names


def _node(op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op_type, inputs, outputs, name=name, domain=MS_DOMAIN, **attrs)


def _np(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").float().numpy()


def build_decoder(model: Any) -> tuple[Any, DecoderShape]:
    """The ONNX decoder (fp32 weights) for a Llama-layout torch causal LM, and its variants: Phi-3's
    fused q/k/v and gate/up projections (the same weights, already concatenated), Gemma's norms
    (scaled by 1 + weight), scaled embeddings and GELU (tanh) MLP."""
    from onnx import TensorProto, helper

    check_supported(model)
    config = model.config
    nh = int(config.num_attention_heads)
    kvh = kv_heads(config)
    hd = int(getattr(config, "head_dim", None) or config.hidden_size // nh)
    layers = int(config.num_hidden_layers)
    shape = DecoderShape(layers, nh, kvh, hd, int(config.vocab_size), context_length(config))
    g = _Graph()
    x, embedding = (_gpt2_body if config.model_type == "gpt2" else _llama_body)(model, g, shape)
    # logits for the last ``logits_to_keep`` positions (0: all of them)
    start = g.op("Neg", ["logits_to_keep"])
    last = g.op(
        "Slice", [x, start, g.const("slice_end", np.array([np.iinfo(np.int64).max])), g.const("one", np.array([1]))]
    )
    head = model.get_output_embeddings().weight
    if head.data_ptr() == embedding.data_ptr():  # tied: one copy in the file
        head_t = g.op("Transpose", [EMBEDDING], perm=[1, 0])  # folded once when the session opens
    else:
        head_t = g.const("lm_head.weight_t", _np(head).T)
    g.op("MatMul", [last, head_t], ["logits"])

    f32, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
    cache = ["batch", kvh, "max_sequence", hd]
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["batch", "sequence"]),
        *(helper.make_tensor_value_info(n, f32, cache) for n in shape.past_names()),
        helper.make_tensor_value_info("seqlens_k", i32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", i32, []),
        helper.make_tensor_value_info("logits_to_keep", i64, [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", f32, ["batch", "logits_sequence", shape.vocab_size]),
        *(helper.make_tensor_value_info(n, f32, ["batch", kvh, "present_sequence", hd]) for n in shape.present_names()),
    ]
    graph = helper.make_graph(g.nodes, "decoder", inputs, outputs, g.inits)
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="edgeptm",
    )
    onnx_model.ir_version = IR_VERSION
    return onnx_model, shape


EMBEDDING = "model.embed_tokens.weight"  # the token table's name (the INT4 quantizer finds it by its Gather)


def _attention(g: _Graph, qkv: str, i: int, shape: DecoderShape, scale: float, rotary: tuple[str, str] | None) -> str:
    """GroupQueryAttention over the packed q/k/v, writing layer ``i``'s cache in place."""
    past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
    tables = list(rotary) if rotary else []
    out, _, _ = g.op(
        "GroupQueryAttention",
        [qkv, "", "", past_k, past_v, "seqlens_k", "total_sequence_length", *tables],
        [f"attn_{i}", f"present.{i}.key", f"present.{i}.value"],
        domain=MS_DOMAIN,
        num_heads=shape.num_heads,
        kv_num_heads=shape.kv_heads,
        scale=scale,
        do_rotary=1 if rotary else 0,
        rotary_interleaved=0,
    )
    return out


class _Stream:
    """The residual stream: its tensor, and a block's output not yet added to it."""

    def __init__(self, hidden: str) -> None:
        self.hidden, self.pending = hidden, None

    def norm(self, g: _Graph, params: list[str], eps: float, plain: str, skip: str, tag: str) -> str:
        """The norm of the stream (``plain``); a pending block output is added in the same kernel
        (``skip``: one kernel for the add, the norm, and the new stream)."""
        if self.pending is None:
            return g.op(plain, [self.hidden, *params], axis=-1, epsilon=eps)
        n = g._n = g._n + 1
        names = [f"norm_{n}", "", "", f"residual_{n}"]
        g.nodes.append(_node(skip, [self.pending, self.hidden, *params], names, f"{tag}_{n}", epsilon=eps))
        self.hidden, self.pending = names[3], None
        return names[0]


def _linear(g: _Graph, x: str, weight_t: np.ndarray, bias: np.ndarray | None, name: str) -> str:
    y = g.op("MatMul", [x, g.const(f"{name}.weight_t", weight_t)])
    return y if bias is None else g.op("Add", [y, g.const(f"{name}.bias", bias)])


def _gpt2_body(model: Any, g: _Graph, shape: DecoderShape) -> tuple[str, Any]:
    """GPT-2: learned positions, LayerNorm (with bias) before attention and MLP, q/k/v in one
    projection with biases, a plain (not gated) GELU MLP, and a final LayerNorm. Its Conv1D layers
    keep their weights as [in, out]: MatMul takes them as they are."""
    config = model.config
    body = model.transformer
    eps = float(config.layer_norm_epsilon)
    embedding = body.wte.weight
    hidden = g.op("Gather", [g.const(EMBEDDING, _np(embedding)), "input_ids"])
    # Positions of this step's tokens, as GroupQueryAttention places them: from 0 for a first prompt
    # (sequence == total length), else after the tokens already in each row's cache.
    length = g.op("Cast", [g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("dim1", np.array(1))])], to=6)
    first = g.op("Equal", [length, "total_sequence_length"])
    zero, one = g.const("zero_i32", np.array(0, dtype=np.int32)), g.const("one_i32", np.array(1, dtype=np.int32))
    after = g.op("Sub", [g.op("Add", ["seqlens_k", one]), length])
    begin = g.op("Where", [first, zero, after])
    steps = g.op("Range", [zero, length, one])
    positions = g.op("Add", [g.op("Unsqueeze", [begin, g.const("axis1", np.array([1]))]), steps])
    table = g.const("model.embed_positions.weight", _np(body.wpe.weight))
    stream = _Stream(g.op("Add", [hidden, g.op("Gather", [table, g.op("Cast", [positions], to=7)])]))

    def norm(module: Any, name: str) -> str:
        """LayerNorm (with bias) of the residual stream."""
        params = [g.const(f"{name}.weight", _np(module.weight)), g.const(f"{name}.bias", _np(module.bias))]
        return stream.norm(g, params, eps, "LayerNormalization", "SkipLayerNormalization", "SkipLN")

    gelu = "FastGelu" if config.activation_function in ("gelu_new", "gelu_pytorch_tanh") else "Gelu"
    scale = float(shape.head_dim**-0.5) if getattr(config, "scale_attn_weights", True) else 1.0
    for i, block in enumerate(body.h):
        attn, mlp = block.attn, block.mlp
        x = norm(block.ln_1, f"layers.{i}.ln_1")
        qkv = _linear(g, x, _np(attn.c_attn.weight), _np(attn.c_attn.bias), f"layers.{i}.attn.qkv_proj")
        out = _attention(g, qkv, i, shape, scale, None)
        stream.pending = _linear(g, out, _np(attn.c_proj.weight), _np(attn.c_proj.bias), f"layers.{i}.attn.o_proj")
        x = norm(block.ln_2, f"layers.{i}.ln_2")
        up = g.op("MatMul", [x, g.const(f"layers.{i}.mlp.up_proj.weight_t", _np(mlp.c_fc.weight))])
        act = g.op(gelu, [up, g.const(f"layers.{i}.mlp.up_proj.bias", _np(mlp.c_fc.bias))], domain=MS_DOMAIN)
        stream.pending = _linear(g, act, _np(mlp.c_proj.weight), _np(mlp.c_proj.bias), f"layers.{i}.mlp.down_proj")
    return norm(body.ln_f, "norm"), embedding


def _llama_body(model: Any, g: _Graph, shape: DecoderShape) -> tuple[str, Any]:
    """Llama's layout (and its variants, see build_decoder): the final norm's output and the token table."""
    config = model.config
    body = model.model
    hd = shape.head_dim
    eps = float(config.rms_norm_eps)
    offset = 1.0 if config.model_type == "gemma" else 0.0  # Gemma's RMSNorm scales by (1 + weight)
    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")

    # Rotary tables as GroupQueryAttention reads them: [positions, head_dim / 2], computed from the
    # model's own inverse frequencies (which already carry any rope scaling) and attention scaling.
    rotary = body.rotary_emb
    inv_freq = _np(rotary.inv_freq).astype(np.float64)
    scaling = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)
    angles = np.outer(np.arange(shape.context_length, dtype=np.float64), inv_freq)
    cos = g.const("cos_cache", (np.cos(angles) * scaling).astype(np.float32))
    sin = g.const("sin_cache", (np.sin(angles) * scaling).astype(np.float32))

    hidden = g.op("Gather", [g.const(EMBEDDING, _np(body.embed_tokens.weight)), "input_ids"])
    embed_scale = getattr(body.embed_tokens, "embed_scale", None)  # Gemma: sqrt(hidden size), in the weights' dtype
    if embed_scale is not None:
        scale = np.asarray(embed_scale.to(body.embed_tokens.weight.dtype).float().item(), dtype=np.float32)
        hidden = g.op("Mul", [hidden, g.const("embed_scale", scale)])
    stream = _Stream(hidden)

    def norm(weight: Any, name: str) -> str:
        """RMSNorm of the residual stream."""
        gamma = g.const(name, _np(weight) + np.float32(offset))
        plain, skip = "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"
        return stream.norm(g, [gamma], eps, plain, skip, "SkipNorm")

    for i, layer in enumerate(body.layers):
        attn, mlp = layer.self_attn, layer.mlp
        x = norm(layer.input_layernorm.weight, f"layers.{i}.input_layernorm.weight")
        qkv_b = None
        if hasattr(attn, "qkv_proj"):  # Phi-3: q, k, v already one projection, in that order
            qkv_w = _np(attn.qkv_proj.weight)
            if attn.qkv_proj.bias is not None:
                raise ExportError(f"{config.model_type}: a fused q/k/v bias is not implemented by the decoder graph")
        else:
            qkv_w = np.concatenate([_np(attn.q_proj.weight), _np(attn.k_proj.weight), _np(attn.v_proj.weight)])
            if attn.q_proj.bias is not None:  # Qwen2
                qkv_b = np.concatenate([_np(attn.q_proj.bias), _np(attn.k_proj.bias), _np(attn.v_proj.bias)])
        qkv = _linear(g, x, qkv_w.T, qkv_b, f"layers.{i}.attn.qkv_proj")
        out = _attention(g, qkv, i, shape, float(getattr(attn, "scaling", hd**-0.5)), (cos, sin))
        o_b = None if attn.o_proj.bias is None else _np(attn.o_proj.bias)
        stream.pending = _linear(g, out, _np(attn.o_proj.weight).T, o_b, f"layers.{i}.attn.o_proj")
        x = norm(layer.post_attention_layernorm.weight, f"layers.{i}.post_attention_layernorm.weight")
        if hasattr(mlp, "gate_up_proj"):  # Phi-3: gate and up already one projection, gate first
            gate_up_w = _np(mlp.gate_up_proj.weight)
        else:
            gate_up_w = np.concatenate([_np(mlp.gate_proj.weight), _np(mlp.up_proj.weight)])
        width = int(gate_up_w.shape[0]) // 2
        gate_up = g.op("MatMul", [x, g.const(f"layers.{i}.mlp.gate_up_proj.weight_t", gate_up_w.T)])
        split = g.const(f"layers.{i}.mlp.split", np.array([width, width], dtype=np.int64))
        gate, up = g.op("Split", [gate_up, split], 2, axis=-1)
        if act == "silu":
            gated = g.op("Mul", [gate, g.op("Sigmoid", [gate])])
        else:  # GELU, tanh approximation: ONNX Runtime's FastGelu is that formula in one kernel
            gated = g.op("FastGelu", [gate], domain=MS_DOMAIN)
        hidden_act = g.op("Mul", [gated, up])
        stream.pending = _linear(g, hidden_act, _np(mlp.down_proj.weight).T, None, f"layers.{i}.mlp.down_proj")
    return norm(body.norm.weight, "norm.weight"), body.embed_tokens.weight


def io_record(shape: DecoderShape) -> dict[str, Any]:
    """The manifest's ``io`` for the decoder graph."""
    cache = ["batch", shape.kv_heads, "max_sequence", shape.head_dim]
    present = ["batch", shape.kv_heads, "present_sequence", shape.head_dim]
    return {
        "inputs": [
            {"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
            *({"name": n, "dtype": "float32", "shape": cache} for n in shape.past_names()),
            {"name": "seqlens_k", "dtype": "int32", "shape": ["batch"]},
            {"name": "total_sequence_length", "dtype": "int32", "shape": []},
            {"name": "logits_to_keep", "dtype": "int64", "shape": [1]},
        ],
        "outputs": [
            {"name": "logits", "dtype": "float32", "shape": ["batch", "logits_sequence", shape.vocab_size]},
            *({"name": n, "dtype": "float32", "shape": present} for n in shape.present_names()),
        ],
    }


def save_model(onnx_model: Any, path: Any) -> None:
    """Write the graph, its weights in one external-data file beside it when over protobuf's 2 GB."""
    import onnx

    if onnx_model.ByteSize() < 2_000_000_000:
        onnx.save_model(onnx_model, str(path))
        return
    onnx.save_model(onnx_model, str(path), save_as_external_data=True, location=path.name + ".data")


# Stand-in prompts when a checkpoint carries no validation examples (the as-is model).
STAND_IN_PROMPTS = (
    "Write a haiku about rain.",
    "What is the capital of France?",
    "Give me three tips for a good night's sleep.",
    "Summarise: the film is long, but its actors carry it.",
)
DECODE_STEPS = 16  # decode steps compared with PyTorch per prompt (and greedy tokens checked)


def validation_set(artifact: Any, tokenizer: Any, samples: int, val_path: str | None = None) -> dict[str, Any]:
    """Real prompts to compare on, and the encoded validation examples perplexity is measured on
    (None without validation data: then perplexity is not measured, and the record says so)."""
    from edgeptm.tasks.generation import encode_example, prompt_ids, read_lm_data

    data = None
    if val_path:
        data = read_lm_data(val_path)
    elif artifact.has_file("val_data"):
        data = read_lm_data(artifact.file("val_data"))
    max_length = int((artifact.manifest.get("training") or {}).get("max_length") or 512)
    encoded, prompts, source = None, [], "stand-in prompts (no validation data)"
    if data is not None:
        encoded = [e for e in (encode_example(x, tokenizer, max_length) for x in data.examples) if e is not None]
        prompts = [p for p in (prompt_ids(x, tokenizer) for x in data.examples[:samples]) if p]
        source = f"--val {val_path}" if val_path else "validation examples carried by the checkpoint"
    if not prompts:
        chat = bool(getattr(tokenizer, "chat_template", None))
        for text in STAND_IN_PROMPTS[:samples]:
            rendered = (
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
                )
                if chat
                else text
            )
            prompts.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return {"encoded": encoded or None, "prompts": prompts, "source": source}


def open_decoder(path: Any, shape: DecoderShape, threads: int | None = None) -> Any:
    """An OrtDecoder over the graph file at ``path`` (stages validate with it)."""
    from edgeptm.runtime.generator import OrtDecoder
    from edgeptm.runtime.ort_backend import session_options

    import onnxruntime as ort

    class _Session:  # the backend shape OrtDecoder reads
        name = "onnxruntime-cpu"

        def __init__(self) -> None:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    return OrtDecoder(_Session(), shape)


def export_decoder(artifact: Any, out: Any, options: Any, force: bool, inputs: list[Any]) -> Any:
    """The export stage for a causal LM checkpoint: the decoder graph, validated against PyTorch."""
    import time

    import onnxruntime as ort

    from edgeptm.artifacts import ArtifactWriter
    from edgeptm.models.causal import load_lm, load_lm_tokenizer
    from edgeptm.runtime.generator import TorchDecoder
    from edgeptm.tasks.generation import compare_decoders, masked_perplexity

    started = time.perf_counter()
    model = load_lm(artifact)
    tokenizer = load_lm_tokenizer(artifact)
    graph, shape = build_decoder(model)
    atol = options.atol if options.atol is not None else LOGIT_ATOL
    check = validation_set(
        artifact, tokenizer, max(1, min(options.validation_samples, 8)), getattr(options, "val", None)
    )
    with ArtifactWriter(out, force=force, inputs=inputs) as writer:
        path = writer.add("model", "model.onnx")
        save_model(graph, path)
        writer.carry(artifact)
        built = time.perf_counter() - started
        reference, candidate = TorchDecoder(model), open_decoder(path, shape)
        agreement = compare_decoders(reference, candidate, check["prompts"], DECODE_STEPS)
        if agreement["max_abs_logit_diff"] > atol:
            raise ExportError(
                f"{artifact.path}: the decoder graph's logits differ from PyTorch's by "
                f"{agreement['max_abs_logit_diff']:.3g} (tolerance {atol:g}) on {check['source']}"
            )
        quality: dict[str, Any] = {
            "perplexity": None,
            "note": "no validation data: pass --val FILE to measure perplexity",
        }
        if check["encoded"]:
            ours = masked_perplexity(candidate, check["encoded"])
            theirs = masked_perplexity(reference, check["encoded"])
            quality = {
                "perplexity": ours["perplexity"],
                "perplexity_torch": theirs["perplexity"],
                "val_tokens": ours["tokens"],
                "perplexity_on": "completion tokens of the validation examples",
            }
        record = dict(artifact.manifest["model"])
        return writer.finish(
            "onnx",
            {
                "task": "text-generation",
                "labels": [],
                "model": record,
                "io": io_record(shape),
                "preprocessing": artifact.preprocessing,
                "precision": "fp32",
                "parents": [artifact.as_parent()],
                "export": {
                    "opset": OPSET,
                    "graph": "edgeptm decoder: GroupQueryAttention over a shared KV buffer (com.microsoft), "
                    "one graph for prefill and decode",
                    "runtime": "onnxruntime",
                    "onnxruntime": ort.__version__,
                    "seconds": round(built, 2),
                },
                "validation": {**agreement, "atol": atol, "on": check["source"]},
                "metrics": quality,
            },
        )


LOGIT_ATOL = 1e-2  # fp32 graph vs PyTorch, largest |logit difference| over prefill and decode steps
