"""``quantize --fallback auto``: keep in float the nodes INT8 costs most, until the accuracy budget holds,
and the nodes whose INT8 kernels are no faster than float here, when that makes the model faster.

Two passes over builds of one source (static.StaticBuild / dynamic.DynamicBuild: pre-processed and
calibrated once, so each build is one quantizer call):

1. **Latency.** The quantized nodes fall into kernel groups (op type; convolutions split into
   depthwise and the rest; MatMul into weight and activation products; ops that only move data follow
   their neighbours and are not tried alone). The ops with weights alone INT8 (the classic recipe) are
   timed against every op INT8; from the faster, each other group in turn, largest first, is switched
   (to INT8, or to float) and the whole model is timed against the current best in this process (ONNX
   Runtime CPU, the validation data's first input at the model's max length, interleaved rounds); a
   switch stays when the model gets faster by more than ``MIN_GAIN`` and its accuracy still holds.
   The result is then timed against every node INT8 and stays if faster, or as fast within
   ``MIN_GAIN`` and more accurate. Measured, not assumed: on this x86 CPU, EfficientNet-Lite0's
   depthwise convolutions kept float made the whole model 2.4x slower (Q/DQ conversions and layout
   changes around each float segment), though their INT8 kernels are no faster than float ones.
2. **Accuracy.** When the drop on the validation data still exceeds the budget, the parent (the
   pre-processed float graph the quantizer read) and the quantized graph run side by side
   (layerwise.compare_graphs) and every quantized node is ranked by the error it introduces itself;
   the top 1, 2, 4, ... stay float until the budget holds, then the count is narrowed by bisection.
   With every node float the graph is the float one: the search always ends with a model, FP32 at
   worst, and says so.

Every step (what was kept float, accuracy, p50) goes into the manifest's ``quantization.fallback``.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)

# Ops that only move or reshape data: the quantizer carries Q/DQ through them (ONNX Runtime runs them on
# INT8 tensors when their neighbours are INT8); kept float alone, they only break their neighbours' fusion.
MOVEMENT_OPS = frozenset(
    {"Reshape", "Transpose", "Shape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Slice", "Split", "Expand"}
)
# Kernel groups whose ops carry weights: INT8 there shrinks the model, and is where INT8 kernels pay most.
WEIGHT_GROUPS = frozenset({"MatMul (weights)", "Conv", "Conv (depthwise)", "Gemm"})
MIN_GAIN = 0.03  # a latency step must make the whole model this much faster (3%) to be kept
DIFF_FEEDS = 32  # validation inputs the layer-wise ranking runs on
TIMING_ROUNDS = 7
TIMING_RUNS = 15  # per graph and round, at least: more for a fast graph, up to TURN_S of runs
TURN_S = 0.04
PAUSE_S = 0.02  # between sessions' turns: one session's spinning threads settle before the next runs


@dataclass
class Candidate:
    path: Path
    keep_float: list[str]
    accuracy: float | None = None
    p50_ms: float | None = None


@dataclass
class Search:
    """What the fallback needs from quantize: a builder, the scored data, a feed to time."""

    builder: Any  # StaticBuild | DynamicBuild
    work: Path
    val_batches: Callable[[], Iterable[tuple[dict[str, np.ndarray], np.ndarray]]]
    diff_feeds: list[dict[str, np.ndarray]]
    timing_feed: dict[str, np.ndarray]
    parent_accuracy: float
    max_drop: float
    threads: int | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    builds: int = 0
    full: Candidate | None = None  # every eligible node INT8

    def build(self, keep_float: Iterable[str]) -> Candidate:
        self.builds += 1
        keep = sorted(set(keep_float))
        path = self.work / f"candidate-{self.builds}.onnx"
        self.builder.build(path, keep, describe=False)
        return Candidate(path, keep)

    def score(self, candidate: Candidate) -> float:
        if candidate.accuracy is None:
            candidate.accuracy = accuracy_of(candidate.path, self.val_batches(), self.threads)
        return candidate.accuracy

    def holds(self, candidate: Candidate) -> bool:
        return (self.parent_accuracy - self.score(candidate)) * 100 <= self.max_drop + 1e-9

    def step(self, action: str, candidate: Candidate, kept: bool, **extra: Any) -> None:
        row = {
            "action": action,
            "float_nodes": len(candidate.keep_float),
            "accuracy": None if candidate.accuracy is None else round(candidate.accuracy, 6),
            "accuracy_delta_points": None
            if candidate.accuracy is None
            else round((candidate.accuracy - self.parent_accuracy) * 100, 4),
            "p50_ms": None if candidate.p50_ms is None else round(candidate.p50_ms, 4),
            "kept": kept,
            **extra,
        }
        self.steps.append(row)
        log.info(
            "fallback: %s: %d float nodes, accuracy %s, p50 %s ms%s",
            action,
            row["float_nodes"],
            "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}",
            "-" if row["p50_ms"] is None else f"{row['p50_ms']:.3f}",
            "" if kept else " (not kept)",
        )


def run_fallback(search: Search, target: Path) -> dict[str, Any]:
    """Both passes; the chosen graph is copied to ``target``; the manifest record is returned."""
    import onnx

    float_graph = onnx.load(str(search.builder.float_path), load_external_data=False)
    started = time.perf_counter()
    full = search.full = search.build([])
    eligible = quantized_nodes(float_graph, full.path)
    search.score(full)
    fp32_ms, full.p50_ms = latencies([search.builder.float_path, full.path], search.timing_feed, search.threads)
    search.step("every eligible node INT8", full, True, quantized_nodes=len(eligible))
    best = _latency_pass(search, float_graph, full, eligible)
    best = _accuracy_pass(search, float_graph, best, eligible)
    outcome = "int8"
    if len(best.keep_float) >= len(eligible):
        outcome = "fp32: no INT8 node could stay within the accuracy budget; the graph is the float one"
        log.warning("fallback: %s", outcome)
    # The three figures the record compares, timed together (the steps' figures are each from their own pair).
    graphs = [search.builder.float_path, full.path] + ([best.path] if best is not full else [])
    fp32_ms, full.p50_ms, *chosen = latencies(graphs, search.timing_feed, search.threads)
    best.p50_ms = chosen[0] if chosen else full.p50_ms
    shutil.copyfile(best.path, target)
    record = search.builder.describe(target)
    record["fallback"] = {
        "method": "auto",
        "max_accuracy_drop": search.max_drop,
        "outcome": outcome,
        "eligible_nodes": len(eligible),
        "float_nodes": best.keep_float,
        "float_node_types": _count_types(float_graph, best.keep_float),
        "accuracy": round(search.score(best), 6),
        "parent_accuracy": round(search.parent_accuracy, 6),
        "latency_ms": {
            "fp32_graph": round(fp32_ms, 4),
            "every_node_int8": round(full.p50_ms, 4),
            "chosen": None if best.p50_ms is None else round(best.p50_ms, 4),
            "timed": f"the three together at the end, ONNX Runtime CPU in the quantizing process, batch 1, "
            f"{TIMING_ROUNDS} interleaved rounds of >= {TIMING_RUNS} runs, threads {search.threads or 'default'}; "
            "each step's p50 comes from its own interleaved pair",
        },
        "steps": search.steps,
        "builds": search.builds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return record


def _latency_pass(search: Search, float_graph: Any, best: Candidate, eligible: list[str]) -> Candidate:
    """Which kernel groups run INT8. First the ops with weights alone INT8 (the classic recipe) against
    every op INT8: from the faster of the two, each other group in turn is switched (to INT8 from the
    first, to float from the second) and kept where the whole model gets faster."""
    groups = {
        name: nodes
        for name, nodes in sorted(kernel_groups(float_graph, eligible).items(), key=lambda kv: -len(kv[1]))
        if name not in MOVEMENT_OPS  # Q/DQ pass through them: they follow their neighbours, no kernel of their own
    }
    light = [n for name, nodes in groups.items() if name not in WEIGHT_GROUPS for n in nodes]
    forward = False
    if light and len(light) < len(eligible):
        weights_only = search.build([*best.keep_float, *light])
        best.p50_ms, weights_only.p50_ms = latencies([best.path, weights_only.path], search.timing_feed, search.threads)
        forward = weights_only.p50_ms < best.p50_ms * (1 - MIN_GAIN)
        search.step("latency: only the ops with weights INT8", weights_only, forward, was_ms=round(best.p50_ms, 4))
        if forward:
            best = weights_only
    for name, nodes in groups.items():
        if forward and name in WEIGHT_GROUPS:
            continue
        keep = [n for n in best.keep_float if n not in nodes] if forward else [*best.keep_float, *nodes]
        trial = search.build(keep)
        best.p50_ms, trial.p50_ms = latencies([best.path, trial.path], search.timing_feed, search.threads)
        faster = trial.p50_ms < best.p50_ms * (1 - MIN_GAIN)
        action = f"latency: {name} {'INT8' if forward else 'float'} ({len(nodes)})"
        if faster and (search.holds(trial) or search.score(trial) >= search.score(best)):
            search.step(action, trial, True, was_ms=round(best.p50_ms, 4))
            best = trial
        else:
            reason = "not faster" if not faster else "lost accuracy"
            search.step(action, trial, False, was_ms=round(best.p50_ms, 4), reason=reason)
    if best.keep_float:  # the steps' gains, confirmed together against every node INT8
        full = search.full
        full.p50_ms, best.p50_ms = latencies([full.path, best.path], search.timing_feed, search.threads)
        faster = best.p50_ms < full.p50_ms * (1 - MIN_GAIN)
        # As fast within the noise and more accurate: the accuracy pass then starts closer to the budget.
        even = best.p50_ms <= full.p50_ms * (1 + MIN_GAIN) and search.score(best) > search.score(full)
        reason = "" if faster else ("as fast, more accurate" if even else "not faster together")
        search.step("latency: the kept steps together, against every node INT8", best, faster or even, reason=reason)
        if not (faster or even):
            best = full
    return best


def _accuracy_pass(search: Search, float_graph: Any, best: Candidate, eligible: list[str]) -> Candidate:
    from edgeptm.layerwise import compare_graphs, node_costs

    if search.holds(best):
        return best
    diffs = compare_graphs(search.builder.float_path, best.path, search.diff_feeds, search.threads)
    costs = node_costs(diffs)
    ranked = sorted(
        (n for n in eligible if n not in best.keep_float), key=lambda n: costs.get(n, float("-inf")), reverse=True
    )
    base = list(best.keep_float)
    tried: dict[int, Candidate] = {}

    def trial(k: int) -> Candidate:
        if k not in tried:
            tried[k] = candidate = search.build([*base, *ranked[:k]])
            search.score(candidate)
            passed = search.holds(candidate)
            search.step(
                f"accuracy: the {k} most damaging node(s) float",
                candidate,
                passed,
                newly_float=ranked[:k][-min(k, 8) :],
            )
        return tried[k]

    low, high = 0, None
    k = 1
    while k <= len(ranked):
        if search.holds(trial(k)):
            high = k
            break
        low = k
        k = len(ranked) if k * 2 > len(ranked) and k < len(ranked) else k * 2
    if high is None:  # everything float
        return trial(len(ranked)) if ranked else best
    while high - low > 1 and high - low > high // 8:  # narrow the count: fewer float nodes, same budget
        middle = (low + high) // 2
        if search.holds(trial(middle)):
            high = middle
        else:
            low = middle
    return tried[high]


def quantized_nodes(float_graph: Any, built: Path) -> list[str]:
    """Nodes of the float graph that the build quantized: fed by a DequantizeLinear (QDQ), or
    replaced by other operators (dynamic INT8's MatMulInteger, ...)."""
    import onnx

    graph = onnx.load(str(built), load_external_data=False).graph
    dq_outputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    present = {(n.name, n.op_type) for n in graph.node}
    fed_by_dq = {n.name for n in graph.node if any(i in dq_outputs for i in n.input)}
    return [
        n.name for n in float_graph.graph.node if n.name and (n.name in fed_by_dq or (n.name, n.op_type) not in present)
    ]


def kernel_groups(float_graph: Any, nodes: list[str]) -> dict[str, list[str]]:
    """The quantized nodes by the kernel they run: op type, with depthwise (grouped) convolutions
    and activation x activation MatMuls apart."""
    constants = {t.name for t in float_graph.graph.initializer} | {
        o for n in float_graph.graph.node if n.op_type == "Constant" for o in n.output
    }
    wanted = set(nodes)
    groups: dict[str, list[str]] = {}
    for node in float_graph.graph.node:
        if node.name not in wanted:
            continue
        key = node.op_type
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            key = "Conv (depthwise)" if group > 1 else "Conv"
        elif node.op_type == "MatMul":
            key = "MatMul (weights)" if set(node.input[:2]) & constants else "MatMul (activations)"
        groups.setdefault(key, []).append(node.name)
    return groups


def _count_types(float_graph: Any, names: list[str]) -> dict[str, int]:
    wanted = set(names)
    counts: dict[str, int] = {}
    for node in float_graph.graph.node:
        if node.name in wanted:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def accuracy_of(path: Path, batches: Iterable[tuple[dict[str, np.ndarray], np.ndarray]], threads: int | None) -> float:
    """Top-1 accuracy of the graph's first output on labelled batches (ONNX Runtime CPU)."""
    import onnxruntime as ort

    from edgeptm.runtime.ort_backend import session_options

    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    right = total = 0
    for feed, labels in batches:
        logits = session.run(None, {k: v for k, v in feed.items() if k in names})[0]
        right += int((np.asarray(logits).argmax(-1) == labels).sum())
        total += len(labels)
    return right / max(total, 1)


def latencies(paths: list[Path], feed: dict[str, np.ndarray], threads: int | None) -> list[float]:
    """Median ms per run of each graph on ``feed``, timed in interleaved rounds (the order rotates
    each round) so that a slow episode of the machine hits every graph alike."""
    import onnxruntime as ort

    from edgeptm.runtime.ort_backend import session_options

    sessions = []
    for path in paths:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in session.get_inputs()}
        mine = {k: v for k, v in feed.items() if k in names}
        for _ in range(5):
            session.run(None, mine)
        sessions.append((session, mine))
    samples: list[list[float]] = [[] for _ in paths]
    for r in range(TIMING_ROUNDS):
        order = list(range(len(paths)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            session, mine = sessions[i]
            time.sleep(PAUSE_S)
            session.run(None, mine)  # re-warm after the others ran
            turn = time.perf_counter()
            runs = 0
            while runs < TIMING_RUNS or time.perf_counter() - turn < TURN_S:
                t = time.perf_counter()
                session.run(None, mine)
                samples[i].append((time.perf_counter() - t) * 1000)
                runs += 1
    return [statistics.median(s) for s in samples]
