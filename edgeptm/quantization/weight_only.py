"""Weight-only block quantization of a decoder graph: ONNX Runtime's MatMulNBits (4 or 8 bits).

Every MatMul whose weight is a constant [K, N] becomes a MatMulNBits over blocks of ``block_size``
weights along K, each block with its own scale, symmetric (no zero points). That choice rested on a
kernel timing taken on a busy machine; measured again on a quiet one (2 threads, a 576x1536 decode
matmul, accuracy level 4), uint8 zero points run *faster*, 36.9 us against 48.3 us, and asymmetric
blocks also fit weights that came from an asymmetric 4-bit grid better: they are the next step
(benchmarks/generative/RESULTS.md). Float zero points run ~40x slower. The
token embedding and the LM head (tied in small models, 17-28% of the weights) are treated
explicitly: one block-quantized table at ``embedding_bits`` serves both, the LM head as a
MatMulNBits and the embedding as a GatherBlockQuantized over the same bytes.

How each block's scale is chosen (``method``):

- ``rtn``: round to nearest, the block's largest-magnitude weight mapped to the grid's end (as
  ONNX Runtime's own quantizer does);
- ``search`` (data-free): candidate scales around that one, each refined by least squares, the
  one with the smallest error kept (the idea behind llama.cpp's k-quants);
- ``imatrix`` (data-aware): the same search, each weight's error weighted by the mean square of
  the activation it multiplies, measured by running the float graph on calibration text (llama.cpp's
  importance matrix);
- ``gptq`` (data-aware): GPTQ (Frantar et al., 2022): columns are quantized in order and each
  one's rounding error is pushed onto the columns not yet quantized through the inverse Hessian of
  the layer's inputs (X^T X over calibration text), so the layer's *outputs* stay close; each
  block's scale is chosen by the search above when the block is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from edgeptm.errors import UsageError

METHODS = ("rtn", "search", "imatrix", "gptq")
MS_DOMAIN = "com.microsoft"
# Candidate multipliers of the round-to-nearest scale for the search (finer near 1).
SEARCH_FACTORS = np.concatenate([np.linspace(0.80, 0.95, 7), np.linspace(0.96, 1.04, 9), np.linspace(1.06, 1.20, 6)])


@dataclass(frozen=True)
class BlockQuantized:
    """A [N, K] weight as MatMulNBits stores it: packed [N, blocks, block*bits/8], scales [N, blocks]."""

    packed: np.ndarray
    scales: np.ndarray
    bits: int
    block_size: int
    k: int

    def dequantize(self) -> np.ndarray:
        """The [N, K] float weight the kernel computes with (for checks and error figures)."""
        q = unpack(self.packed, self.bits).astype(np.float32) - 2 ** (self.bits - 1)
        n, blocks = self.scales.shape
        w = q.reshape(n, blocks, self.block_size) * self.scales[:, :, None]
        return w.reshape(n, -1)[:, : self.k]


def pack(q: np.ndarray, bits: int) -> np.ndarray:
    """[N, blocks, block] unsigned codes -> bytes, low nibble first for 4 bits."""
    q = q.astype(np.uint8)
    if bits == 8:
        return q
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return packed.astype(np.uint8)
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def quantize_weight(
    w: np.ndarray, bits: int, block_size: int, method: str = "search", importance: np.ndarray | None = None
) -> BlockQuantized:
    """Block-quantize ``w`` [N, K] (rows are outputs, blocks run along K)."""
    if bits not in (4, 8):
        raise UsageError(f"weight-only quantization takes 4 or 8 bits, not {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise UsageError(f"--block-size must be a power of two >= 16, got {block_size}")
    if method not in METHODS:
        raise UsageError(f"unknown weight quantization method '{method}' (known: {', '.join(METHODS)})")
    n, k = w.shape
    blocks = -(-k // block_size)
    padded = np.zeros((n, blocks * block_size), dtype=np.float32)
    padded[:, :k] = w
    x = padded.reshape(n, blocks, block_size)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    # the largest-magnitude weight of each block lands on the grid's negative end (-8 / -128)
    idx = np.abs(x).argmax(axis=-1)[..., None]
    base = np.take_along_axis(x, idx, axis=-1)[..., 0] / lo
    base = np.where(base == 0, 1e-12, base)
    if method == "rtn":
        scale = base
    else:
        weight = None
        if importance is not None and method in ("imatrix", "gptq"):
            weight = np.zeros(block_size * blocks, dtype=np.float32)
            weight[:k] = np.maximum(importance.astype(np.float32), 1e-8)
            weight = weight.reshape(1, blocks, block_size)
        scale = _block_scale(x, bits, weight)
    q = np.clip(np.rint(x / scale[..., None]), lo, hi) - lo
    return BlockQuantized(pack(q, bits), scale.astype(np.float32), bits, block_size, k)


def _block_scale(x: np.ndarray, bits: int, weight: np.ndarray | None = None) -> np.ndarray:
    """The searched scale of each row of ``x`` [..., block] (see module docstring)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    idx = np.abs(x).argmax(axis=-1)[..., None]
    base = np.take_along_axis(x, idx, axis=-1)[..., 0] / lo
    base = np.where(base == 0, 1e-12, base)
    w = np.ones(x.shape[-1], dtype=np.float32) if weight is None else weight
    best_err = np.full(base.shape, np.inf, dtype=np.float32)
    scale = base.copy()
    for factor in SEARCH_FACTORS:
        s = base * factor
        q = np.clip(np.rint(x / s[..., None]), lo, hi)
        num = (w * x * q).sum(-1)
        den = (w * q * q).sum(-1)
        s = np.where(den > 0, num / np.maximum(den, 1e-30), s)
        q = np.clip(np.rint(x / s[..., None]), lo, hi)
        err = (w * (x - s[..., None] * q) ** 2).sum(-1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        scale = np.where(better, s, scale)
    return scale.astype(np.float32)


def gptq_weight(w: np.ndarray, hessian: np.ndarray, bits: int, block_size: int, damp: float = 0.01) -> BlockQuantized:
    """GPTQ of ``w`` [N, K] given ``hessian`` = X^T X [K, K] of its inputs; blocks of ``block_size``
    along K get their scales when reached (the lazy-batch form of the paper, batches of 128 columns)."""
    n, k = w.shape
    if k % block_size:
        return quantize_weight(w, bits, block_size, "search")
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    W = w.astype(np.float64).copy()
    H = hessian.astype(np.float64).copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(k)] += damp * float(np.mean(np.diag(H)))
    try:
        Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper triangular
    except np.linalg.LinAlgError:
        return quantize_weight(w, bits, block_size, "search")
    codes = np.zeros((n, k), dtype=np.float64)
    scales = np.zeros((n, k // block_size), dtype=np.float32)
    batch = max(block_size, 128 // block_size * block_size)
    for i1 in range(0, k, batch):
        i2 = min(i1 + batch, k)
        W1 = W[:, i1:i2].copy()
        err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % block_size == 0:
                importance = np.diag(H)[col : col + block_size].astype(np.float32)
                scales[:, col // block_size] = _block_scale(
                    W1[:, i : i + block_size].astype(np.float32), bits, importance
                )
            s = scales[:, col // block_size].astype(np.float64)
            q = np.clip(np.rint(W1[:, i] / s), lo, hi)
            codes[:, col] = q
            err = (W1[:, i] - q * s) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            err1[:, i] = err
        W[:, i2:] -= err1 @ Hinv[i1:i2, i2:]
    packed = pack((codes - lo).reshape(n, k // block_size, block_size), bits)
    return BlockQuantized(packed, scales, bits, block_size, k)


def _initializers(graph: Any) -> dict[str, Any]:
    return {init.name: init for init in graph.initializer}


def quantize_decoder_graph(
    model: Any,
    bits: int,
    block_size: int,
    method: str,
    embedding_bits: int,
    accuracy_level: int,
    statistics: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Rewrite ``model`` (an edgeptm decoder ModelProto) in place; returns what was quantized.
    ``statistics``: X^T X / tokens per matmul input (``input_statistics``), for imatrix and gptq."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = _initializers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    statistics = statistics or {}

    def quantized(w: np.ndarray, b: int, activation: str) -> BlockQuantized:
        xtx = statistics.get(activation)
        if method == "gptq" and b == 4 and xtx is not None:
            return gptq_weight(w, xtx, b, block_size)
        how = method if b == 4 else "rtn"  # 8 bits: round to nearest is within noise of the search
        return quantize_weight(w, b, block_size, how, None if xtx is None else np.diag(xtx).copy())

    counts = {"matmuls": 0, "weights_quantized": 0, "weights_float": 0}
    new_nodes: list[Any] = []
    drop: set[str] = set()

    def add(name: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def nbits(node: Any, wq: BlockQuantized, base: str, n: int, k: int, b_name: str | None = None) -> Any:
        b_name = b_name or add(f"{base}_Q{wq.bits}", wq.packed)
        s_name = add(f"{base}_scales", wq.scales.reshape(-1))
        return helper.make_node(
            "MatMulNBits",
            [node.input[0], b_name, s_name],
            list(node.output),
            name=node.name + "_Q",
            domain=MS_DOMAIN,
            K=k,
            N=n,
            bits=wq.bits,
            block_size=wq.block_size,
            accuracy_level=accuracy_level,
        )

    embed_name, table = _embedding(graph, inits)
    gathered = False  # whether the embedding now reads a block-quantized table
    for node in graph.node:
        if node.op_type != "MatMul":
            new_nodes.append(node)
            continue
        weight_name = node.input[1]
        source = producers.get(weight_name)
        tied = source is not None and source.op_type == "Transpose" and source.input[0] == embed_name
        if tied and embedding_bits < 32:
            # the tied LM head: the embedding table [V, H] is MatMulNBits' [N, K] as it stands, and
            # the embedding gathers from the same bytes
            v, h = table.shape
            wq = quantized(table, embedding_bits, node.input[0])
            b_name = add(f"{embed_name}_Q{wq.bits}", wq.packed)
            new_nodes.append(nbits(node, wq, embed_name, v, h, b_name))
            new_nodes.extend(_gather_nodes(embed_name, b_name, f"{embed_name}_scales", wq, v, h, add))
            drop.add(source.name)
            gathered = True
            counts["matmuls"] += 1
            counts["weights_quantized"] += table.size
            continue
        if weight_name not in inits:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[weight_name]).astype(np.float32)  # [K, N]
        b = embedding_bits if weight_name.startswith("lm_head") else bits
        if w.ndim != 2 or b >= 32:
            new_nodes.append(node)
            continue
        k, n = w.shape
        wq = quantized(w.T, b, node.input[0])
        new_nodes.append(nbits(node, wq, weight_name, n, k))
        counts["matmuls"] += 1
        counts["weights_quantized"] += w.size
    if table is not None and embedding_bits < 32 and not gathered:  # untied: the embedding on its own
        v, h = table.shape
        wq = quantized(table, embedding_bits, "")
        b_name = add(f"{embed_name}_Q{wq.bits}", wq.packed)
        s_name = add(f"{embed_name}_scales", wq.scales.reshape(-1))
        new_nodes.extend(_gather_nodes(embed_name, b_name, s_name, wq, v, h, add))
        gathered = True
    if gathered:
        _rewire_embedding(new_nodes, embed_name)
    kept = [n for n in new_nodes if n.name not in drop]
    del graph.node[:]
    graph.node.extend(_topological(kept, graph))
    _remove_unused(graph)
    counts["weights_float"] = sum(int(np.prod(i.dims)) for i in graph.initializer if i.data_type == 1)
    return counts


def _topological(nodes: list[Any], graph: Any) -> list[Any]:
    """Nodes ordered so each comes after its inputs' producers (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError(f"internal: graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    return ordered


def _embedding(graph: Any, inits: dict[str, Any]) -> tuple[str | None, np.ndarray | None]:
    from onnx import numpy_helper

    for node in graph.node:
        if node.op_type == "Gather" and node.input[1] == "input_ids" and node.input[0] in inits:
            return node.input[0], numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
    return None, None


def _gather_nodes(embed_name: str, b_name: str, s_name: str, wq: BlockQuantized, v: int, h: int, add) -> list[Any]:
    """GatherBlockQuantized over MatMulNBits' bytes, reshaped to [V, H*bits/8] (folded once when the
    session opens) - replaces the float Gather of the embedding, which is then unused."""
    from onnx import helper

    flat = add(f"{embed_name}_gather_shape", np.array([v, h * wq.bits // 8], dtype=np.int64))
    sflat = add(f"{embed_name}_gather_scale_shape", np.array([v, -1], dtype=np.int64))
    data = f"{embed_name}_gather_data"
    scales = f"{embed_name}_gather_scales"
    return [
        helper.make_node("Reshape", [b_name, flat], [data], name=f"{embed_name}_reshape_data"),
        helper.make_node("Reshape", [s_name, sflat], [scales], name=f"{embed_name}_reshape_scales"),
        helper.make_node(
            "GatherBlockQuantized",
            [data, "input_ids", scales],
            ["embeddings_q"],
            name="embed_tokens_Q",
            domain=MS_DOMAIN,
            gather_axis=0,
            quantize_axis=1,
            block_size=wq.block_size,
            bits=wq.bits,
        ),
    ]


def _rewire_embedding(nodes: list[Any], embed_name: str) -> None:
    """Point the embedding Gather's consumers at the quantized gather's output; drop the Gather."""
    for node in list(nodes):
        if node.op_type == "Gather" and node.input[0] == embed_name:
            old = node.output[0]
            nodes.remove(node)
            for other in nodes:
                for j, name in enumerate(other.input):
                    if name == old:
                        other.input[j] = "embeddings_q"
            return


def _remove_unused(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def matmul_inputs(model: Any) -> list[str]:
    """The activations that feed the graph's weight matmuls (what the importance matrix measures)."""
    inits = {i.name for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        src = producers.get(node.input[1])
        if node.input[1] in inits or (src is not None and src.op_type == "Transpose"):
            if node.input[0] not in names:
                names.append(node.input[0])
    return names


def input_statistics(
    model: Any, feeds: Iterable[dict[str, np.ndarray]], threads: int | None = None
) -> dict[str, np.ndarray]:
    """X^T X / tokens of every weight matmul's input over ``feeds`` (feeds of the float graph),
    keyed by the activation's name: its diagonal is the importance matrix, the whole GPTQ's Hessian."""
    import onnx
    import onnxruntime as ort

    names = matmul_inputs(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    count = 0
    for feed in feeds:
        outputs = session.run(names, feed)
        for name, value in zip(names, outputs):
            flat = value.reshape(-1, value.shape[-1]).astype(np.float32)
            sums[name] = sums.get(name, 0.0) + flat.T @ flat
        count += int(np.prod(outputs[0].shape[:-1]))
    return {name: total / max(count, 1) for name, total in sums.items()}
