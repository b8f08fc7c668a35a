"""Weight-only block quantization of a decoder graph: ONNX Runtime's MatMulNBits (4 or 8 bits).

Every MatMul whose weight is a constant [K, N] becomes a MatMulNBits over blocks of ``block_size``
weights along K, each block with its own scale. 4-bit blocks are asymmetric by default: each block
also has a 4-bit zero point (uint8 codes), w = scale * (code - zero_point). Measured on a quiet
machine (2 threads, a 576x1536 decode matmul, accuracy level 4) uint8 zero points run *faster*
than none (22-37 us against 24-48 us), and they fit skewed blocks better; ``symmetric=True`` keeps
the zero-point-free form. Float zero points run ~50x slower (ONNX Runtime unpacks the weight on
every call) and are never written. 8-bit blocks are symmetric, rounded to nearest (within noise of
every search at 8 bits).

The token embedding and the LM head (tied in small models, 17-28% of the weights) are treated
explicitly: one block-quantized table at ``embedding_bits`` serves both, the LM head as a
MatMulNBits and the embedding as a GatherBlockQuantized over the same bytes, scales and zero points.

How each block's scale (and zero point) is chosen (``method``):

- ``rtn``: round to nearest: symmetric, the block's largest-magnitude weight on the grid's end (as
  ONNX Runtime's own quantizer does); asymmetric, the block's range (with 0) spread over 16 codes;
- ``search`` (data-free): candidate scales (and zero points) around that one, each refined by least
  squares, the one with the smallest error kept (the idea behind llama.cpp's k-quants);
- ``imatrix`` (data-aware): the same search, each weight's error weighted by the mean square of
  the activation it multiplies, measured by running the float graph on calibration text (llama.cpp's
  importance matrix);
- ``gptq`` (data-aware): GPTQ (Frantar et al., 2022): columns are quantized in order and each
  one's rounding error is pushed onto the columns not yet quantized through the inverse Hessian of
  the layer's inputs (X^T X over calibration text), so the layer's *outputs* stay close; each
  block's scale is chosen by the search above when the block is reached.

Weights that already lie on a 4-bit grid. A model de-quantized from a 4-bit file (SmolLM2 from its
Q4_1 GGUF: every block of 32 is exactly ``step * code + minimum``, 16 codes) loses nothing if the
same grid is written back, but MatMulNBits' zero points are integers and a block's minimum is not an
integer number of steps: with the nearest integer zero point each block is off by a constant
``offset = minimum + step * zero_point`` (|offset| <= step / 2), which costs as much as rounding
afresh. ``grid_offsets`` writes such a matmul exactly: the block codes and steps as they are, and
the offsets as extra input columns of the same MatMulNBits, fed with the block sums of its input
(y = sum_b step_b (codes - zp_b) . x_b + offset_b * sum(x_b)): Reshape, ReduceSum and Concat in the
graph, one more 4-bit block per 32 blocks of weights. The offsets themselves are 4-bit quantized
(on Q4_1-style test weights the output error is 20-35x below re-rounding's). ``"widest"`` does this
for the widest matmuls (the MLP's packed gate/up projection in each layer, which carries most of the
re-rounding loss and has the most work to hide the extra operators behind), ``"all"`` for every
matmul on a grid.

The 4-bit embedding / LM head table. At 4 bits the tied table (a 49k x 576 matrix read once per
token: 8-bit, it takes ~2.1 ms of SmolLM2's ~10 ms decode step on 2 cores, 4-bit ~1.2 ms) is where
4 bits cost the most quality per byte (SmolLM2: +3.2% perplexity for the head alone). Most of that
is the logits of frequent tokens, and byte-level BPE numbers tokens roughly by frequency (merges are
learned most frequent first): keeping the first ``embedding_8bit_rows`` rows (2,048 of 49,152) at
8 bits brings the head's cost to +0.8%. The head is then two MatMulNBits (8-bit rows, 4-bit rows)
and a Concat; the embedding gathers ids below the split from the 8-bit rows and the rest from the
4-bit rows (Min/Sub/Max, two GatherBlockQuantized, Where): the bytes are still shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from edgeptm.errors import UsageError

METHODS = ("rtn", "search", "imatrix", "gptq")
GRID_OFFSETS = ("none", "widest", "all")
MS_DOMAIN = "com.microsoft"
# Candidate multipliers of the round-to-nearest scale for the search (finer near 1).
SEARCH_FACTORS = np.concatenate([np.linspace(0.80, 0.95, 7), np.linspace(0.96, 1.04, 9), np.linspace(1.06, 1.20, 6)])
GRID_TOLERANCE = 1e-3  # how far from an integer code a weight on a grid may be (float32 de-quantization)


@dataclass(frozen=True)
class BlockQuantized:
    """A [N, K] weight as MatMulNBits stores it: packed [N, blocks, block*bits/8], scales [N, blocks],
    and for asymmetric blocks the zero points' codes [N, blocks] (None: symmetric, the grid's middle)."""

    packed: np.ndarray
    scales: np.ndarray
    bits: int
    block_size: int
    k: int
    zero_points: np.ndarray | None = None

    def dequantize(self) -> np.ndarray:
        """The [N, K] float weight the kernel computes with (for checks and error figures)."""
        n, blocks = self.scales.shape
        q = unpack(self.packed, self.bits).astype(np.float32).reshape(n, blocks, self.block_size)
        zero = 2 ** (self.bits - 1) if self.zero_points is None else self.zero_points[:, :, None].astype(np.float32)
        w = (q - zero) * self.scales[:, :, None]
        return w.reshape(n, -1)[:, : self.k]

    def packed_zero_points(self) -> np.ndarray | None:
        """MatMulNBits' zero_points input: per row, the blocks' codes packed like the weights (4 bits:
        two per byte, low nibble first, each row padded to whole bytes), flattened."""
        if self.zero_points is None:
            return None
        z = self.zero_points.astype(np.uint8)
        if self.bits == 4:
            if z.shape[1] % 2:
                z = np.concatenate([z, np.zeros((z.shape[0], 1), dtype=np.uint8)], axis=1)
            z = z[:, 0::2] | (z[:, 1::2] << 4)
        return np.ascontiguousarray(z).reshape(-1)


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


def _blocks(w: np.ndarray, block_size: int) -> np.ndarray:
    """[N, K] -> [N, blocks, block], K zero-padded to whole blocks."""
    n, k = w.shape
    blocks = -(-k // block_size)
    padded = np.zeros((n, blocks * block_size), dtype=np.float32)
    padded[:, :k] = w
    return padded.reshape(n, blocks, block_size)


def quantize_weight(
    w: np.ndarray,
    bits: int,
    block_size: int,
    method: str = "search",
    importance: np.ndarray | None = None,
    symmetric: bool = True,
) -> BlockQuantized:
    """Block-quantize ``w`` [N, K] (rows are outputs, blocks run along K)."""
    if bits not in (4, 8):
        raise UsageError(f"weight-only quantization takes 4 or 8 bits, not {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise UsageError(f"--block-size must be a power of two >= 16, got {block_size}")
    if method not in METHODS:
        raise UsageError(f"unknown weight quantization method '{method}' (known: {', '.join(METHODS)})")
    n, k = w.shape
    x = _blocks(w, block_size)
    weight = None
    if importance is not None and method in ("imatrix", "gptq"):
        weight = np.zeros(x.shape[1] * block_size, dtype=np.float32)
        weight[:k] = np.maximum(importance.astype(np.float32), 1e-8)
        weight = weight.reshape(1, x.shape[1], block_size)
    if symmetric:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = _rtn_scale(x, bits) if method == "rtn" else _block_scale(x, bits, weight)
        q = np.clip(np.rint(x / scale[..., None]), lo, hi) - lo
        return BlockQuantized(pack(q, bits), scale.astype(np.float32), bits, block_size, k)
    scale, zero = _block_asymmetric(x, bits, weight, search=method != "rtn")
    q = np.clip(np.rint(x / scale[..., None]) + zero[..., None], 0, 2**bits - 1)
    return BlockQuantized(pack(q, bits), scale, bits, block_size, k, zero.astype(np.uint8))


def _rtn_scale(x: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric round to nearest: the largest-magnitude weight of each block lands on the grid's
    negative end (-8 / -128)."""
    idx = np.abs(x).argmax(axis=-1)[..., None]
    base = np.take_along_axis(x, idx, axis=-1)[..., 0] / -(2 ** (bits - 1))
    return np.where(base == 0, 1e-12, base).astype(np.float32)


def _block_scale(x: np.ndarray, bits: int, weight: np.ndarray | None = None) -> np.ndarray:
    """The searched symmetric scale of each row of ``x`` [..., block] (see module docstring)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    base = _rtn_scale(x, bits)
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


def _block_asymmetric(
    x: np.ndarray, bits: int, weight: np.ndarray | None = None, search: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The (scale, integer zero point) of each row of ``x`` [..., block]. Round to nearest spreads
    the block's range (with 0: an integer zero point always puts 0 on the grid) over the codes;
    the search tries scales around it with the nearest zero point and its neighbours, refines each
    scale by (weighted) least squares for its codes, and keeps the one with the smallest error."""
    top = 2**bits - 1
    lo = np.minimum(x.min(axis=-1), 0.0)
    hi = np.maximum(x.max(axis=-1), 0.0)
    base = np.maximum((hi - lo) / top, 1e-12).astype(np.float32)
    base_zero = np.clip(np.rint(-lo / base), 0, top)
    if not search:
        return base, base_zero.astype(np.float32)
    w = np.ones(x.shape[-1], dtype=np.float32) if weight is None else weight
    best_err = np.full(base.shape, np.inf, dtype=np.float32)
    scale, zero = base.copy(), base_zero.copy()
    for factor in SEARCH_FACTORS:
        s0 = base * factor
        for shift in (-1, 0, 1):
            z = np.clip(np.rint(-lo / s0) + shift, 0, top)
            a = np.clip(np.rint(x / s0[..., None]) + z[..., None], 0, top) - z[..., None]
            num = (w * x * a).sum(-1)
            den = (w * a * a).sum(-1)
            s = np.where((den > 0) & (num > 0), num / np.maximum(den, 1e-30), s0)
            a = np.clip(np.rint(x / s[..., None]) + z[..., None], 0, top) - z[..., None]
            err = (w * (x - s[..., None] * a) ** 2).sum(-1)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            scale = np.where(better, s, scale)
            zero = np.where(better, z, zero)
    return scale.astype(np.float32), zero.astype(np.float32)


def on_grid(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """If every block of ``w`` [N, K] lies on a grid ``step * code + minimum`` of 2**bits codes (a
    weight de-quantized from a Q4_1-style file), its steps and minima [N, blocks] and codes [N,
    blocks, block]; otherwise None."""
    n, k = w.shape
    if k % block_size:
        return None
    x = w.reshape(n, k // block_size, block_size).astype(np.float32)
    lo, hi = x.min(axis=-1), x.max(axis=-1)
    step = (hi - lo) / (2**bits - 1)
    safe = np.where(step > 0, step, 1.0)
    codes = (x - lo[..., None]) / safe[..., None]
    if float(np.abs(codes - np.rint(codes)).max(initial=0.0)) > GRID_TOLERANCE:
        return None
    return step.astype(np.float32), lo.astype(np.float32), np.rint(codes)


def grid_with_offsets(w: np.ndarray, bits: int, block_size: int) -> BlockQuantized | None:
    """``w`` [N, K] on its own grid, exactly, with the blocks' offsets as extra columns (see module
    docstring): a BlockQuantized of [N, K + K / block_size] for the input [x, block sums of x];
    None when ``w`` is not on a grid."""
    grid = on_grid(w, bits, block_size)
    if grid is None:
        return None
    step, lo, codes = grid
    top = 2**bits - 1
    zero = np.where(step > 0, np.clip(np.rint(-lo / np.where(step > 0, step, 1.0)), 0, top), 0.0)
    offsets = lo + step * zero  # w = step * (code - zero) + offset, exactly
    extra = quantize_weight(offsets, bits, block_size, "search", symmetric=False)
    n, k = w.shape
    return BlockQuantized(
        np.concatenate([pack(codes, bits), extra.packed], axis=1),
        np.concatenate([step, extra.scales], axis=1).astype(np.float32),
        bits,
        block_size,
        k + offsets.shape[1],
        np.concatenate([zero, extra.zero_points], axis=1).astype(np.uint8),
    )


def gptq_weight(
    w: np.ndarray, hessian: np.ndarray, bits: int, block_size: int, damp: float = 0.01, symmetric: bool = True
) -> BlockQuantized:
    """GPTQ of ``w`` [N, K] given ``hessian`` = X^T X [K, K] of its inputs; blocks of ``block_size``
    along K get their scales (and zero points) when reached (the lazy-batch form of the paper,
    batches of 128 columns)."""
    n, k = w.shape
    if k % block_size:
        return quantize_weight(w, bits, block_size, "search", symmetric=symmetric)
    W = w.astype(np.float64).copy()
    H = hessian.astype(np.float64).copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(k)] += damp * float(np.mean(np.diag(H)))
    try:
        Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper triangular
    except np.linalg.LinAlgError:
        return quantize_weight(w, bits, block_size, "search", symmetric=symmetric)
    # codes are stored unsigned: symmetric blocks sit around the fixed zero point 2**(bits-1)
    top = 2**bits - 1
    codes = np.zeros((n, k), dtype=np.float64)
    scales = np.zeros((n, k // block_size), dtype=np.float32)
    zeros = np.full((n, k // block_size), 2 ** (bits - 1), dtype=np.float32)
    batch = max(block_size, 128 // block_size * block_size)
    for i1 in range(0, k, batch):
        i2 = min(i1 + batch, k)
        W1 = W[:, i1:i2].copy()
        err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            b = col // block_size
            if col % block_size == 0:
                block = W1[:, i : i + block_size].astype(np.float32)
                importance = np.diag(H)[col : col + block_size].astype(np.float32)
                if symmetric:
                    scales[:, b] = _block_scale(block, bits, importance)
                else:
                    scales[:, b], zeros[:, b] = _block_asymmetric(block, bits, importance)
            s, z = scales[:, b].astype(np.float64), zeros[:, b].astype(np.float64)
            q = np.clip(np.rint(W1[:, i] / s) + z, 0, top)
            codes[:, col] = q
            err = (W1[:, i] - (q - z) * s) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            err1[:, i] = err
        W[:, i2:] -= err1 @ Hinv[i1:i2, i2:]
    packed = pack(codes.reshape(n, k // block_size, block_size), bits)
    return BlockQuantized(packed, scales, bits, block_size, k, None if symmetric else zeros.astype(np.uint8))


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
    symmetric: bool = False,
    grid_offsets: str = "widest",
    embedding_8bit_rows: int = 0,
) -> dict[str, Any]:
    """Rewrite ``model`` (an edgeptm decoder ModelProto) in place; returns what was quantized.
    ``statistics``: X^T X / tokens per matmul input (``input_statistics``), for imatrix and gptq.
    ``symmetric`` and ``grid_offsets`` concern the 4-bit matmuls (see module docstring)."""
    from onnx import helper, numpy_helper

    if grid_offsets not in GRID_OFFSETS:
        raise UsageError(f"--grid-offsets {grid_offsets}: not one of {', '.join(GRID_OFFSETS)}")
    graph = model.graph
    inits = _initializers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    statistics = statistics or {}

    def quantized(w: np.ndarray, b: int, activation: str, sym: bool) -> BlockQuantized:
        xtx = statistics.get(activation)
        if method == "gptq" and b == 4 and xtx is not None:
            return gptq_weight(w, xtx, b, block_size, symmetric=sym)
        how = method if b == 4 else "rtn"  # 8 bits: round to nearest is within noise of the search
        return quantize_weight(w, b, block_size, how, None if xtx is None else np.diag(xtx).copy(), sym)

    counts: dict[str, Any] = {"matmuls": 0, "weights_quantized": 0, "weights_float": 0, "grid_offsets": 0}
    new_nodes: list[Any] = []
    drop: set[str] = set()

    def add(name: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def nbits(x: str, wq: BlockQuantized, base: str, output: str, name: str, b_name: str | None = None) -> Any:
        """MatMulNBits of ``x`` by ``wq`` (its initializers named after ``base``)."""
        b_name = b_name or add(f"{base}_Q{wq.bits}", wq.packed)
        inputs = [x, b_name, add(f"{base}_scales", wq.scales.reshape(-1))]
        zero_points = wq.packed_zero_points()
        if zero_points is not None:
            inputs.append(add(f"{base}_zero_points", zero_points))
        return helper.make_node(
            "MatMulNBits",
            inputs,
            [output],
            name=name,
            domain=MS_DOMAIN,
            K=wq.k,
            N=wq.scales.shape[0],
            bits=wq.bits,
            block_size=wq.block_size,
            accuracy_level=accuracy_level,
        )

    with_sums: dict[str, str] = {}  # activation -> [activation, its block sums]

    def block_sums(x: str) -> str:
        if x not in with_sums:
            base = f"{x}_block_sums".replace("/", "_").lstrip("_")
            shape = add(f"{base}_shape", np.array([0, 0, -1, block_size], dtype=np.int64))
            axes = add(f"{base}_axes", np.array([-1], dtype=np.int64))
            new_nodes.append(helper.make_node("Reshape", [x, shape], [f"{base}_blocks"], name=f"{base}_reshape"))
            new_nodes.append(
                helper.make_node("ReduceSum", [f"{base}_blocks", axes], [base], name=f"{base}_sum", keepdims=0)
            )
            with_sums[x] = f"{base}_with_x"
            new_nodes.append(helper.make_node("Concat", [x, base], [with_sums[x]], name=f"{base}_concat", axis=-1))
        return with_sums[x]

    exact = _grid_offset_weights(graph, inits, bits, block_size, grid_offsets)
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
            # the embedding gathers from the same bytes, scales and zero points; at 4 bits the first
            # ``embedding_8bit_rows`` tokens keep 8-bit rows (see module docstring)
            v, h = table.shape
            split = min(embedding_8bit_rows, v - 1) if embedding_bits == 4 else 0
            parts = [(f"{embed_name}_hi", 0, split, 8), (f"{embed_name}_lo", split, v, embedding_bits)]
            if not split:
                parts = [(embed_name, 0, v, embedding_bits)]
            outputs = []
            for base, start, stop, part_bits in parts:
                wq = quantized(table[start:stop], part_bits, node.input[0], symmetric or part_bits == 8)
                b_name = add(f"{base}_Q{wq.bits}", wq.packed)
                output = node.output[0] if len(parts) == 1 else f"{base}_logits"
                new_nodes.append(nbits(node.input[0], wq, base, output, f"{base}_head_Q", b_name))
                outputs.append(output)
                new_nodes.extend(_gather_nodes(base, b_name, wq, h, add, ids=f"{base}_ids" if split else "input_ids"))
            if split:
                new_nodes.append(helper.make_node("Concat", outputs, list(node.output), name="lm_head_concat", axis=-1))
                new_nodes.extend(_split_ids(embed_name, split, add))
            drop.add(source.name)
            gathered = True
            counts["matmuls"] += 1
            counts["weights_quantized"] += table.size
            counts["embedding_8bit_rows"] = split
            continue
        if weight_name not in inits:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[weight_name]).astype(np.float32)  # [K, N]
        b = embedding_bits if weight_name.startswith("lm_head") else bits
        if w.ndim != 2 or b >= 32:
            new_nodes.append(node)
            continue
        wq = exact.get(weight_name)
        if wq is not None:
            new_nodes.append(nbits(block_sums(node.input[0]), wq, weight_name, node.output[0], node.name + "_Q"))
            counts["grid_offsets"] += 1
        else:
            wq = quantized(w.T, b, node.input[0], symmetric or b == 8)
            new_nodes.append(nbits(node.input[0], wq, weight_name, node.output[0], node.name + "_Q"))
        counts["matmuls"] += 1
        counts["weights_quantized"] += w.size
    if table is not None and embedding_bits < 32 and not gathered:  # untied: the embedding on its own
        v, h = table.shape
        wq = quantized(table, embedding_bits, "", symmetric or embedding_bits == 8)
        b_name = add(f"{embed_name}_Q{wq.bits}", wq.packed)
        add(f"{embed_name}_scales", wq.scales.reshape(-1))
        if wq.zero_points is not None:
            add(f"{embed_name}_zero_points", wq.packed_zero_points())
        new_nodes.extend(_gather_nodes(embed_name, b_name, wq, h, add))
        gathered = True
    if gathered:
        _rewire_embedding(new_nodes, embed_name)
    kept = [n for n in new_nodes if n.name not in drop]
    del graph.node[:]
    graph.node.extend(_topological(kept, graph))
    _remove_unused(graph)
    counts["weights_float"] = sum(int(np.prod(i.dims)) for i in graph.initializer if i.data_type == 1)
    return counts


def _grid_offset_weights(
    graph: Any, inits: dict[str, Any], bits: int, block_size: int, which: str
) -> dict[str, BlockQuantized]:
    """The 4-bit matmul weights to write exactly on their own grid with offset columns (``which``:
    none, widest or all; see module docstring), by initializer name."""
    from onnx import numpy_helper

    if which == "none" or bits != 4:
        return {}
    candidates = {}
    for node in graph.node:
        name = node.input[1] if node.op_type == "MatMul" and len(node.input) > 1 else ""
        if name in inits and not name.startswith("lm_head") and len(inits[name].dims) == 2:
            candidates[name] = tuple(inits[name].dims)
    if which == "widest" and candidates:
        widest = max(k * n for k, n in candidates.values())
        candidates = {name: dims for name, dims in candidates.items() if dims[0] * dims[1] == widest}
    exact = {}
    for name in candidates:
        wq = grid_with_offsets(numpy_helper.to_array(inits[name]).astype(np.float32).T, bits, block_size)
        if wq is not None:
            exact[name] = wq
    return exact


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


def _gather_nodes(base: str, b_name: str, wq: BlockQuantized, h: int, add, ids: str = "input_ids") -> list[Any]:
    """GatherBlockQuantized of ``ids`` over MatMulNBits' bytes (and its ``{base}_scales`` and, when
    asymmetric, ``_zero_points``), reshaped to [rows, ...] (folded once when the session opens),
    into ``{base}_embeddings`` (``embeddings_q`` for the whole table): replaces the float Gather of
    the embedding, which is then unused."""
    from onnx import helper

    rows = wq.scales.shape[0]
    flat = add(f"{base}_gather_shape", np.array([rows, h * wq.bits // 8], dtype=np.int64))
    by_row = add(f"{base}_gather_rows", np.array([rows, -1], dtype=np.int64))
    nodes = [
        helper.make_node("Reshape", [b_name, flat], [f"{base}_gather_data"], name=f"{base}_reshape_data"),
        helper.make_node(
            "Reshape", [f"{base}_scales", by_row], [f"{base}_gather_scales"], name=f"{base}_reshape_scales"
        ),
    ]
    inputs = [f"{base}_gather_data", ids, f"{base}_gather_scales"]
    if wq.zero_points is not None:
        nodes.append(
            helper.make_node(
                "Reshape", [f"{base}_zero_points", by_row], [f"{base}_gather_zero_points"], name=f"{base}_reshape_zp"
            )
        )
        inputs.append(f"{base}_gather_zero_points")
    nodes.append(
        helper.make_node(
            "GatherBlockQuantized",
            inputs,
            ["embeddings_q" if ids == "input_ids" else f"{base}_embeddings"],
            name=f"{base}_gather_Q",
            domain=MS_DOMAIN,
            gather_axis=0,
            quantize_axis=1,
            block_size=wq.block_size,
            bits=wq.bits,
        )
    )
    return nodes


def _split_ids(embed_name: str, split: int, add) -> list[Any]:
    """The embedding of a table split at token ``split``: ids below it gather from the 8-bit rows
    (``{embed_name}_hi``), the rest from the others (``_lo``, at id - split), and Where picks."""
    from onnx import helper

    hi, lo = f"{embed_name}_hi", f"{embed_name}_lo"
    first_lo = add(f"{embed_name}_split", np.array(split, dtype=np.int64))
    last_hi = add(f"{embed_name}_split_last", np.array(split - 1, dtype=np.int64))
    zero = add(f"{embed_name}_split_zero", np.array(0, dtype=np.int64))
    axis = add(f"{embed_name}_split_axis", np.array([-1], dtype=np.int64))
    return [
        helper.make_node("Min", ["input_ids", last_hi], [f"{hi}_ids"], name=f"{hi}_ids"),
        helper.make_node("Sub", ["input_ids", first_lo], [f"{lo}_shifted"], name=f"{lo}_shift"),
        helper.make_node("Max", [f"{lo}_shifted", zero], [f"{lo}_ids"], name=f"{lo}_ids"),
        helper.make_node("Less", ["input_ids", first_lo], [f"{embed_name}_is_hi"], name=f"{embed_name}_is_hi"),
        helper.make_node("Unsqueeze", [f"{embed_name}_is_hi", axis], [f"{embed_name}_pick"], name=f"{embed_name}_pick"),
        helper.make_node(
            "Where",
            [f"{embed_name}_pick", f"{hi}_embeddings", f"{lo}_embeddings"],
            ["embeddings_q"],
            name="embed_where",
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
