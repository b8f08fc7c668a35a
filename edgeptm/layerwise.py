"""Layer-wise comparison of two ONNX graphs: where along the graph do their values part?

Both graphs run on the same feeds with every float tensor they share by name exposed as an output
(ONNX Runtime, no graph rewrites, so each tensor is the one the graph names). Per matched tensor,
statistics accumulate over the feeds without keeping the arrays: cosine, max and mean absolute
difference, relative L2 error. Names match across the graphs edgeptm writes from one export: a QDQ
graph keeps each op's own output name (its Q/DQ pairs add new tensors), dynamic INT8 keeps the
MatMul output names, FP16 adds Casts around the same names.

Per node of the first graph, ``introduced`` is the relative error of its outputs minus the largest
relative error among its inputs: what the node itself adds, not what reached it. It ranks the
nodes for quantize's fallback (quantization/fallback.py) and gives ``diff`` its "largest steps".
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
DEFAULT_MIN_COSINE = 0.99


@dataclass
class TensorDiff:
    """One tensor both graphs compute, with the node of the first graph that produces it."""

    name: str
    node: str
    op_type: str
    index: int  # the node's position in the first graph's topological order
    cosine: float
    max_abs: float
    mean_abs: float
    rel_err: float
    introduced: float  # rel_err minus the largest rel_err among the node's matched inputs
    shape: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 7) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class _Accumulator:
    __slots__ = ("dot", "aa", "bb", "dd", "max_abs", "sum_abs", "count", "shape", "mismatch")

    def __init__(self) -> None:
        self.dot = self.aa = self.bb = self.dd = self.max_abs = self.sum_abs = 0.0
        self.count = 0
        self.shape: list[int] = []
        self.mismatch = False

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.shape != b.shape:
            self.mismatch = True
            return
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        d = a - b
        self.dot += float(a @ b)
        self.aa += float(a @ a)
        self.bb += float(b @ b)
        self.dd += float(d @ d)
        if d.size:
            self.max_abs = max(self.max_abs, float(np.abs(d).max()))
        self.sum_abs += float(np.abs(d).sum())
        self.count += d.size
        self.shape = list(a.shape) if not self.shape else self.shape

    def cosine(self) -> float:
        if self.aa == 0.0 and self.bb == 0.0:
            return 1.0
        if self.aa == 0.0 or self.bb == 0.0:
            return 0.0
        return self.dot / (self.aa**0.5 * self.bb**0.5)

    def rel_err(self) -> float:
        if self.aa == 0.0:
            return 0.0 if self.dd == 0.0 else float("inf")
        return (self.dd / self.aa) ** 0.5


def float_tensors(model: Any) -> dict[str, int]:
    """Every float tensor a graph's nodes compute, name -> ONNX element type (shape inference
    first; a tensor whose type it cannot infer is left out)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - an op the checker does not know: fall back to declared types
        inferred = model
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.output})
    produced = {o for n in model.graph.node for o in n.output if o}
    return {name: t for name, t in types.items() if name in produced and t in FLOAT_TYPES}


def _exposed_session(model: Any, names: list[str], work: Path, threads: int | None) -> Any:
    """An ONNX Runtime session of ``model`` that returns ``names`` (graph rewrites off, so the
    values are the ones the graph names)."""
    import onnx
    import onnxruntime as ort

    types = float_tensors(model)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for name in names:
        if name not in present:
            exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 1), None))
    path = work / f"exposed-{id(exposed)}.onnx"
    onnx.save(exposed, str(path), save_as_external_data=exposed.ByteSize() > 1_800_000_000)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _load(model: str | Path | Any) -> Any:
    import onnx

    if isinstance(model, (str, Path)):
        return onnx.load(str(model))
    return model


def compare_graphs(
    model_a: str | Path | Any,
    model_b: str | Path | Any,
    feeds: Iterable[dict[str, np.ndarray]],
    threads: int | None = None,
) -> list[TensorDiff]:
    """Run both graphs on ``feeds`` and compare every float tensor they share by name, in the
    first graph's topological order (its nodes' outputs; the graph inputs are the feeds)."""
    a, b = _load(model_a), _load(model_b)
    types_a, types_b = float_tensors(a), float_tensors(b)
    shared = [name for _, _, name in _order(a) if name in types_a and name in types_b]
    with tempfile.TemporaryDirectory(prefix="edgeptm-diff-") as tmp:
        session_b = _exposed_session(b, shared, Path(tmp), threads)
        inputs_b = {i.name for i in session_b.get_inputs()}
        names_b = [o.name for o in session_b.get_outputs()]

        def run_b(_: list[str], fed: list[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
            for feed in fed:
                yield dict(zip(names_b, session_b.run(None, _only(feed, inputs_b))))

        return _compare(a, shared, feeds, run_b, threads)


def compare_with(
    model_a: str | Path | Any,
    run_b: Callable[[list[str], list[dict[str, np.ndarray]]], Iterator[dict[str, np.ndarray]]],
    feeds: Iterable[dict[str, np.ndarray]],
    threads: int | None = None,
) -> list[TensorDiff]:
    """Graph A against any runtime B that returns, per feed, the tensors it computes under A's names
    (``run_b(names, feeds)``: an engine's own intermediates, see ``Target.intermediates``)."""
    a = _load(model_a)
    types_a = float_tensors(a)
    return _compare(a, [name for _, _, name in _order(a) if name in types_a], feeds, run_b, threads)


def _order(model: Any) -> list[tuple[int, Any, str]]:
    return [(index, node, output) for index, node in enumerate(model.graph.node) for output in node.output]


def _compare(
    a: Any,
    names: list[str],
    feeds: Iterable[dict[str, np.ndarray]],
    run_b: Callable[[list[str], list[dict[str, np.ndarray]]], Iterator[dict[str, np.ndarray]]],
    threads: int | None,
) -> list[TensorDiff]:
    """Graph A with ``names`` exposed against B's values, accumulated feed by feed; the tensors B
    never returned are left out."""
    fed = list(feeds)
    stats = {name: _Accumulator() for name in names}
    with tempfile.TemporaryDirectory(prefix="edgeptm-diff-") as tmp:
        session_a = _exposed_session(a, names, Path(tmp), threads)
        inputs_a = {i.name for i in session_a.get_inputs()}
        names_a = [o.name for o in session_a.get_outputs()]
        for feed, values_b in zip(fed, run_b(names, fed)):
            values_a = dict(zip(names_a, session_a.run(None, _only(feed, inputs_a))))
            for name, value in values_b.items():
                if name in stats and name in values_a:
                    stats[name].add(values_a[name], value)
    rel = {name: s.rel_err() for name, s in stats.items() if not s.mismatch and s.count}
    diffs = []
    for index, node, name in _order(a):
        if name not in rel:
            continue
        s = stats[name]
        before = [rel[i] for i in node.input if i in rel]
        diffs.append(
            TensorDiff(
                name=name,
                node=node.name or f"#{index} {node.op_type}",
                op_type=node.op_type,
                index=index,
                cosine=s.cosine(),
                max_abs=s.max_abs,
                mean_abs=s.sum_abs / s.count,
                rel_err=rel[name],
                introduced=rel[name] - max(before, default=0.0),
                shape=s.shape,
            )
        )
    return diffs


def _only(feed: dict[str, np.ndarray], names: set[str]) -> dict[str, np.ndarray]:
    return {k: v for k, v in feed.items() if k in names}


def first_divergence(
    diffs: list[TensorDiff], min_cosine: float = DEFAULT_MIN_COSINE, max_rel_err: float | None = None
) -> TensorDiff | None:
    """The first tensor, in graph order, whose cosine falls below ``min_cosine`` (or whose relative
    error exceeds ``max_rel_err``): where the graphs part."""
    for d in diffs:
        if d.cosine < min_cosine or (max_rel_err is not None and d.rel_err > max_rel_err):
            return d
    return None


def node_costs(diffs: list[TensorDiff]) -> dict[str, float]:
    """Node name -> the largest error it introduces over its outputs (see the module docstring)."""
    costs: dict[str, float] = {}
    for d in diffs:
        costs[d.node] = max(costs.get(d.node, float("-inf")), d.introduced)
    return costs


# ---- edgeptm diff: two artifacts ---------------------------------------------------------------


@dataclass
class DiffReport:
    a: str
    b: str
    inputs: str
    samples: int
    min_cosine: float
    layerwise: bool  # False: one side exposes no intermediates; only the outputs are compared
    tensors: list[TensorDiff]
    outputs: list[TensorDiff]
    note: str = ""

    @property
    def first(self) -> TensorDiff | None:
        return first_divergence(self.tensors, self.min_cosine)

    def largest_steps(self, n: int = 10) -> list[TensorDiff]:
        return sorted(self.tensors, key=lambda d: d.introduced, reverse=True)[:n]

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "schema": 1,
            "a": self.a,
            "b": self.b,
            "inputs": self.inputs,
            "samples": self.samples,
            "min_cosine": self.min_cosine,
            "layerwise": self.layerwise,
            "note": self.note,
            "matched_tensors": len(self.tensors),
            "first_divergence": first.as_dict() if first else None,
            "largest_steps": [d.as_dict() for d in self.largest_steps()],
            "outputs": [d.as_dict() for d in self.outputs],
            "tensors": [d.as_dict() for d in self.tensors],
        }


def diff_artifacts(
    a: str | Path, b: str | Path, samples: int = 16, min_cosine: float = DEFAULT_MIN_COSINE, threads: int | None = None
) -> DiffReport:
    """Run two artifacts on the same inputs (the first one's validation data, else its stand-ins,
    through its own preprocessing) and compare them: tensor by tensor when both are ONNX graphs, or
    the first is and the second is an engine whose target exposes its intermediates under the ONNX
    names (``Target.intermediates``); their outputs otherwise (a checkpoint, other engines)."""
    from edgeptm.errors import UsageError
    from edgeptm.runtime import load
    from edgeptm.runtime.preprocess import preprocessor_for
    from edgeptm.sources import open_source

    first, second = open_source(a), open_source(b)
    if first.task != second.task or first.labels != second.labels:
        raise UsageError(f"{a} and {b} are not the same model: task or labels differ")
    if first.task == "text-generation":
        raise UsageError("diff compares classifiers and encoders; generators' quantize records their own checks")
    preprocessor = preprocessor_for(first)
    items = preprocessor.sample_inputs(samples)
    how = "validation inputs carried by the first artifact" if first.has_file("val_data") else "stand-in inputs"
    # an engine built for fixed shapes takes exactly those: both sides get the same padded feed
    seq_len = _static_seq_len(second) or _static_seq_len(first)
    feeds = [preprocessor.encode([x], seq_len=seq_len) for x in items]
    engine = _intermediates(second) if first.kind == "onnx" else None
    layerwise = first.kind == "onnx" and (second.kind == "onnx" or engine is not None)
    if second.kind == "onnx" and first.kind == "onnx":
        tensors = compare_graphs(first.file("model"), second.file("model"), feeds, threads)
        outputs = _output_diffs(first, tensors)
        note = ""
    elif engine is not None:
        target, tensors_of = engine
        tensors = compare_with(
            first.file("model"), lambda names, fed: tensors_of(second, names, fed, threads), feeds, threads
        )
        outputs = _output_diffs(first, tensors)
        note = f"layer-wise against {target}: the tensors it computes under the ONNX graph's names"
    else:
        with load(first, threads=threads) as pa, load(second, threads=threads) as pb:
            la, lb = pa.logits(items), pb.logits(items)
        acc = _Accumulator()
        acc.add(np.asarray(la), np.asarray(lb))
        tensors = []
        outputs = [
            TensorDiff(
                "logits", "output", "-", 0, acc.cosine(), acc.max_abs, acc.sum_abs / max(acc.count, 1), acc.rel_err(),
                acc.rel_err(), acc.shape,
            )
        ]  # fmt: skip
        kinds = {first.kind, second.kind} - {"onnx"}
        note = f"outputs only: {', '.join(sorted(kinds))} artifacts expose no intermediate tensors here"
        if second.kind == "onnx" and _intermediates(first) is not None:
            note = "outputs only: put the ONNX artifact first for a layer-wise comparison"
    return DiffReport(str(a), str(b), how, len(items), min_cosine, layerwise, tensors, outputs, note)


def _intermediates(artifact: Any) -> tuple[str, Callable[..., Iterator[dict[str, np.ndarray]]]] | None:
    """(the runtime's title, its intermediates function) for an engine whose target has one."""
    from edgeptm import targets

    target = targets.find((artifact.manifest.get("compile") or {}).get("target"))
    if target is None or not target.intermediates:
        return None
    return target.title, target.load("intermediates")


def _static_seq_len(artifact: Any) -> int | None:
    """A text engine's one sequence length, when it was built for fixed shapes."""
    info = artifact.manifest.get("compile") or {}
    if artifact.task != "text-classification" or not info.get("static_shapes"):
        return None
    for shape in (info.get("shapes") or {}).values():
        if shape.get("min") == shape.get("max") and len(shape.get("max") or []) == 2:
            return int(shape["max"][1])
    return None


def _output_diffs(artifact: Any, tensors: list[TensorDiff]) -> list[TensorDiff]:
    import onnx

    names = [o.name for o in onnx.load(str(artifact.file("model")), load_external_data=False).graph.output]
    by_name = {d.name: d for d in tensors}
    return [by_name[n] for n in names if n in by_name]


def diff_html(report: DiffReport) -> str:
    """One self-contained page in the bench report's style: the divergence, a chart of the error
    along the graph, the largest steps, and every matched tensor."""
    import html

    from edgeptm.benchmarking.report import CSS

    e = html.escape
    first = report.first
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgeptm diff: {e(Path(report.a).name)} vs {e(Path(report.b).name)}</title>",
        f"<style>\n{CSS}</style></head><body>",
        f"<h1>edgeptm diff: {e(report.a)} vs {e(report.b)}</h1>",
        f"<p>{report.samples} inputs ({e(report.inputs)}); {len(report.tensors)} tensors matched; a tensor "
        f"diverges when its cosine falls below {report.min_cosine:g}.</p>",
    ]
    if report.note:
        out.append(f"<p>{e(report.note)}</p>")
    if report.layerwise:
        out.append(
            "<p><b>First divergence:</b> "
            + (
                f"node {e(first.node)} ({e(first.op_type)}), tensor {e(first.name)}, cosine {first.cosine:.5f}</p>"
                if first
                else "none</p>"
            )
        )
        out.append(_error_chart(report))
    headers = ["#", "node", "op", "tensor", "cosine", "max |diff|", "mean |diff|", "rel err", "added"]

    def rows(diffs: list[TensorDiff]) -> list[str]:
        lines = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr></thead><tbody>"]
        for d in diffs:
            cls = ' class="bad"' if d.cosine < report.min_cosine else ""
            cells = [str(d.index), e(d.node), e(d.op_type), e(d.name), f"{d.cosine:.5f}", f"{d.max_abs:.4g}"]
            cells += [f"{d.mean_abs:.4g}", f"{d.rel_err:.4g}", f"{d.introduced:+.4g}"]
            lines.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return [*lines, "</tbody></table>"]

    out += ["<h2>Outputs</h2>", *rows(report.outputs)]
    if report.layerwise:
        out += ["<h2>Largest steps</h2>", "<p>The error a node adds to what reached it.</p>"]
        out += rows(report.largest_steps())
        out += ["<h2>Every matched tensor, in graph order</h2>", *rows(report.tensors)]
    out += ["</body></html>"]
    return "\n".join(out) + "\n"


def _error_chart(report: DiffReport) -> str:
    """Relative error (log scale) along the first graph's node order, the first divergence marked."""
    from edgeptm.benchmarking.charts import chart_style, figure_to_svg, new_figure

    if not report.tensors:
        return ""
    with chart_style():
        fig = new_figure(height=3.2)
        ax = fig.add_subplot()
        xs = [d.index for d in report.tensors]
        ys = [max(d.rel_err, 1e-9) for d in report.tensors]
        ax.plot(xs, ys, color="#4477aa", linewidth=1.2, marker=".", markersize=3)
        ax.set_yscale("log")
        ax.set_xlabel("node, in the first graph's order")
        ax.set_ylabel("relative error (L2)")
        ax.set_title("How far B is from A along the graph")
        first = report.first
        if first is not None:
            ax.axvline(first.index, color="#cc3311", linestyle="--", linewidth=1)
            ax.annotate(
                f"first divergence: {first.node}"[:70],
                (first.index, max(first.rel_err, 1e-9)),
                textcoords="offset points",
                xytext=(6, 8),
                fontsize=8,
                color="#cc3311",
            )
        ax.grid(True, which="major", alpha=0.3)
    return figure_to_svg(fig, "Relative error along the graph", "diff")
