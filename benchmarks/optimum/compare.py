"""edgeptm vs Hugging Face Optimum vs PyTorch dynamic INT8 on the fine-tuned MiniLM classifier.

Runs in the project's venv. Every variant runs in its own worker process (runtimes in one process
steal each other's cores), and the parent interleaves short rounds across the workers, rotating
which goes first, so that the machine's slow episodes hit every variant alike. Read the ratios.
On a shared machine it also samples the other processes' CPU use (0.3 s, every worker idle)
before and after each round, waits up to --quiet-wait s for quiet before a round, and computes
the table over the quiet rounds (others <= --quiet-threshold of the CPUs before and after) when
there are at least 10 of them, else over all rounds; the JSON keeps both, and the round log.

Timed: model compute only, batch 1, sequence 128 (the first validation sentence, tokenized with
the checkpoint's tokenizer and padded to 128 -- the feed `edgeptm bench` times), 2 threads.
- ONNX variants: one ONNX Runtime CPU session each, `session.run(None, feed)` on the same int64
  arrays (input_ids, attention_mask, token_type_ids); ORT_ENABLE_ALL, sequential,
  intra_op_num_threads=2, inter_op_num_threads=1. edgeptm's artifacts are opened by
  `edgeptm.load` (which also applies the session hint in their manifest: SkipLayerNormFusion off);
  Optimum's files get a plain session, as `ORTModel` would give them.
- PyTorch variants: edgeptm's checkpoint on its own loader (SDPA attention), eager, under
  `torch.inference_mode()`, `torch.set_num_threads(2)`; INT8 is
  `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`.

Accuracy: every variant on the whole validation split the artifacts carry (1,000 sentences),
tokenized as edgeptm's Predictor does (cut at the checkpoint's max length, 64; batches of 32
padded to their longest). edgeptm's artifacts are scored through `edgeptm.load(path).predict`.

    .venv/bin/python benchmarks/optimum/compare.py [--root runs/demo] \
        [--optimum benchmarks/optimum/out/optimum] [--rounds 40] [--per-round 10] [--budget-min 14] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BASELINE = "edgeptm INT8"
PAUSE_S = 0.05  # between turns, so one worker's spinning threads settle before the next starts
REWARM = 2  # untimed runs opening every turn: the thread pool idled while the others ran


def variants(root: Path, optimum: Path, diagnostic: bool) -> list[dict[str, Any]]:
    rows = [
        {"name": "edgeptm ONNX FP32", "kind": "edgeptm", "path": root / "onnx-fp32"},
        {"name": BASELINE, "kind": "edgeptm", "path": root / "onnx-int8", "note": "dynamic, per-channel"},
        {"name": "Optimum FP32", "kind": "onnx", "path": optimum / "fp32" / "model.onnx"},
        {"name": "Optimum O2", "kind": "onnx", "path": optimum / "o2" / "model_optimized.onnx"},
        {
            "name": "Optimum O2+INT8",
            "kind": "onnx",
            "path": optimum / "o2-int8" / "model_optimized_quantized.onnx",
            "note": "avx512_vnni(is_static=False, per_channel=False)",
        },
        {
            "name": "Optimum O2+INT8 per-channel",
            "kind": "onnx",
            "path": optimum / "o2-int8-pc" / "model_optimized_quantized.onnx",
            "note": "avx512_vnni(is_static=False, per_channel=True)",
        },
        {"name": "PyTorch FP32", "kind": "torch", "path": root / "checkpoint", "quantize": False},
        {
            "name": "PyTorch dynamic INT8",
            "kind": "torch",
            "path": root / "checkpoint",
            "quantize": True,
            "note": "quantize_dynamic({nn.Linear}, qint8)",
        },
    ]
    if diagnostic:
        rows.append(
            {
                "name": "diag: O2 no-SkipLN + INT8 pc",
                "kind": "onnx",
                "path": optimum / "o2-noskip-int8-pc" / "model_optimized_quantized.onnx",
                "disabled_optimizers": ["SkipLayerNormFusion"],
                "note": "not Optimum's recipe: O2 minus SkipLayerNorm fusion (graph and session)",
            }
        )
    for row in rows:
        row["path"] = str(row["path"])
    return rows


# ----------------------------------------------------------------------------------------- worker


def session_options(threads: int) -> Any:
    """The ONNX Runtime session every variant runs with (graph_report.py profiles the same one)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _ort_session(path: str, threads: int, disabled: list[str] | None) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(
        path,
        sess_options=session_options(threads),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled or None,
    )


def _file_mb(path: Path) -> float:
    size = path.stat().st_size
    data = Path(str(path) + ".data")
    return (size + (data.stat().st_size if data.is_file() else 0)) / 1e6


def _load(config: dict[str, Any]) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """(timed call, validation logits, facts) for one variant."""
    import edgeptm
    from edgeptm.artifacts import open_artifact
    from edgeptm.data.text import artifact_val_data
    from edgeptm.runtime.preprocess import TextPreprocessor

    threads, checkpoint = config["threads"], open_artifact(config["checkpoint"])
    val = artifact_val_data(checkpoint)
    texts, labels = val.texts[: config["val_limit"]], checkpoint.labels
    pre = TextPreprocessor(checkpoint)
    feed = dict(np.load(config["feed"]))
    facts: dict[str, Any] = {}

    if config["kind"] == "edgeptm":
        predictor = edgeptm.load(config["path"], threads=threads)
        artifact = predictor.artifact
        predictions = predictor.predict(texts)  # the brief's scorer: edgeptm's own Predictor
        logits = predictor.logits(texts)
        assert [p.label for p in predictions] == [labels[i] for i in logits.argmax(-1)]
        session = predictor.backend.session
        facts["size_mb"] = artifact.size_bytes(["model"]) / 1e6
        facts["session_hint"] = (artifact.manifest.get("runtime") or {}).get("onnxruntime")
    elif config["kind"] == "onnx":
        session = _ort_session(config["path"], threads, config.get("disabled_optimizers"))
        names = [i.name for i in session.get_inputs()]
        chunks = []
        for start in range(0, len(texts), 32):
            batch = pre.encode(texts[start : start + 32])
            chunks.append(session.run(None, {k: batch[k] for k in names})[0])
        logits = np.concatenate(chunks)
        facts["size_mb"] = _file_mb(Path(config["path"]))
    else:
        import io
        import warnings

        import torch

        warnings.filterwarnings("ignore", message=".*(deprecated|will be removed).*")  # torch.ao's notices

        torch.set_num_threads(threads)
        predictor = edgeptm.load(config["path"], threads=threads)  # the checkpoint on torch eager
        model = predictor.backend.model.eval()
        if config["quantize"]:
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            facts["size_mb"] = buffer.getbuffer().nbytes / 1e6
            dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
            facts["quantized_linears"] = sum(isinstance(m, dynamic_linear) for m in model.modules())
        else:
            facts["size_mb"] = predictor.artifact.size_bytes(["weights"]) / 1e6
        order = predictor.backend.input_names
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = pre.encode(texts[start : start + 32])
                chunks.append(model(*[torch.from_numpy(batch[k]) for k in order]).numpy())
            tensors = [torch.from_numpy(np.ascontiguousarray(feed[k])) for k in order]
        logits = np.concatenate(chunks)

        def call() -> None:
            with torch.inference_mode():
                model(*tensors)

        facts["accuracy"] = float(np.mean([labels[i] == t for i, t in zip(logits.argmax(-1), val.labels)]))
        facts["truth"] = [labels.index(t) for t in val.labels[: len(logits)]]
        return call, logits, facts

    names = [i.name for i in session.get_inputs()]
    facts["inputs"] = names
    bound = {k: feed[k] for k in names}
    facts["accuracy"] = float(np.mean([labels[i] == t for i, t in zip(logits.argmax(-1), val.labels)]))
    facts["truth"] = [labels.index(t) for t in val.labels[: len(logits)]]

    def call() -> None:
        session.run(None, bound)

    return call, logits, facts


def serve(conn: Any, config: dict[str, Any]) -> None:
    try:
        started = time.perf_counter()
        call, logits, facts = _load(config)
        facts["load_and_score_s"] = time.perf_counter() - started
        for _ in range(config["warmup"]):
            call()
        truth = facts.pop("truth")
        conn.send(("ready", {"facts": facts, "logits": logits.astype(np.float32).tolist(), "truth": truth}))
        clock = time.perf_counter_ns
        while True:
            message, count = conn.recv()
            if message == "stop":
                break
            for _ in range(REWARM):
                call()
            times = []
            for _ in range(count):
                t0 = clock()
                call()
                times.append((clock() - t0) / 1e6)
            conn.send(("times", times))
    except Exception as exc:  # reported to the parent, which stops with it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------- parent


def start(config: dict[str, Any]) -> dict[str, Any]:
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", str(theirs.fileno()), json.dumps(config)],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    worker = {"process": process, "conn": Connection(ours.detach()), "name": config["name"]}
    worker["ready"] = ask(worker, None, "ready")
    return worker


def ask(worker: dict[str, Any], message: Any, expect: str) -> Any:
    try:
        if message is not None:
            worker["conn"].send(message)
        kind, payload = worker["conn"].recv()
    except (EOFError, OSError):
        sys.exit(f"{worker['name']}: worker died (exit code {worker['process'].poll()})")
    if kind != expect:
        sys.exit(f"{worker['name']}: {payload}")
    return payload


def stop(worker: dict[str, Any]) -> None:
    try:
        worker["conn"].send(("stop", 0))
    except OSError:
        pass
    try:
        worker["process"].wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker["process"].kill()
        worker["process"].wait()


MIN_QUIET_ROUNDS = 10


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def background_busy(interval: float = 0.3) -> float:
    """Fraction of all CPUs busy over ``interval`` s while every worker waits: other people's load."""
    busy0, total0 = _cpu_times()
    time.sleep(interval)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(threshold: float, limit_s: float) -> tuple[float, float]:
    """Wait (up to ``limit_s``) until others use at most ``threshold`` of the CPUs; (last reading, waited s)."""
    started = time.perf_counter()
    busy = background_busy()
    while busy > threshold and time.perf_counter() - started < limit_s:
        time.sleep(1.0)
        busy = background_busy()
    return busy, time.perf_counter() - started if busy > threshold or time.perf_counter() - started > 0.5 else 0.0


def make_feed(root: Path, seq_len: int, out: Path) -> dict[str, Any]:
    from edgeptm.artifacts import open_artifact
    from edgeptm.data.text import artifact_val_data
    from edgeptm.runtime.preprocess import TextPreprocessor

    checkpoint = open_artifact(root / "checkpoint")
    text = artifact_val_data(checkpoint).texts[0]
    feed = TextPreprocessor(checkpoint).encode([text], seq_len)
    np.savez(out, **feed)
    return {"text": text, "real_tokens": int(feed["attention_mask"].sum()), "shape": list(feed["input_ids"].shape)}


def environment(optimum: Path) -> dict[str, Any]:
    from edgeptm.environment import describe

    env = describe()
    record = optimum / "export_record.json"
    env["optimum_venv"] = json.loads(record.read_text())["versions"] if record.is_file() else None
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/demo", help="holds checkpoint/, onnx-fp32/, onnx-int8/")
    parser.add_argument("--optimum", default=str(HERE / "out" / "optimum"), help="export_optimum.py's --out")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=10, help="timed runs per variant per round")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--val-limit", type=int, default=None, help="score on the first N validation sentences")
    parser.add_argument("--no-diagnostic", action="store_true", help="leave out the diagnostic variant")
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.25,
        help="a round counts as quiet when other processes used at most this fraction of all CPUs just "
        "before and just after it (sampled for 0.3 s while every worker waits)",
    )
    parser.add_argument("--quiet-wait", type=float, default=20, help="seconds to wait for quiet before a round")
    parser.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="start no new round after this many minutes of rounds (at least 10 rounds run)",
    )
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args()

    root, optimum = Path(args.root), Path(args.optimum)
    rows = variants(root, optimum, diagnostic=not args.no_diagnostic)
    missing = [r["path"] for r in rows if not Path(r["path"]).exists()]
    if missing:
        sys.exit("missing: " + ", ".join(missing) + " (run make_hf_dir.py and export_optimum.py first)")
    feed_path = Path(tempfile.gettempdir()) / f"edgeptm-optimum-feed-{os.getpid()}.npz"
    feed_info = make_feed(root, args.seq_len, feed_path)

    started, loadavg_start = time.perf_counter(), os.getloadavg()
    workers: list[dict[str, Any]] = []
    times: dict[str, list[list[float]]] = {r["name"]: [] for r in rows}
    rounds: list[dict[str, float]] = []
    try:
        for row in rows:
            config = {
                **row,
                "checkpoint": str(root / "checkpoint"),
                "feed": str(feed_path),
                "threads": args.threads,
                "warmup": args.warmup,
                "val_limit": args.val_limit,
            }
            workers.append(start(config))
            print(f"ready: {row['name']} ({workers[-1]['ready']['facts']['load_and_score_s']:.1f} s)", file=sys.stderr)
        deadline = time.perf_counter() + args.budget_min * 60 if args.budget_min else None
        for r in range(args.rounds):
            if deadline and time.perf_counter() > deadline and r >= MIN_QUIET_ROUNDS:
                print(f"time budget spent: stopping after {r} rounds", file=sys.stderr)
                break
            before, waited = wait_quiet(args.quiet_threshold, args.quiet_wait)
            for k in range(len(workers)):
                worker = workers[(r + k) % len(workers)]
                times[worker["name"]].append(ask(worker, ("run", args.per_round), "times"))
                time.sleep(PAUSE_S)
            after = background_busy()
            rounds.append({"busy_before": before, "busy_after": after, "waited_s": waited})
            print(
                f"round {r + 1}/{args.rounds}: others' CPU use {before:.2f} before, {after:.2f} after"
                f"{f' (waited {waited:.0f} s)' if waited else ''}",
                file=sys.stderr,
            )
    finally:
        for worker in workers:
            stop(worker)
        feed_path.unlink(missing_ok=True)

    quiet = [max(r["busy_before"], r["busy_after"]) <= args.quiet_threshold for r in rounds]
    use = quiet if sum(quiet) >= MIN_QUIET_ROUNDS else [True] * len(rounds)
    report = summarize(rows, workers, {k: [t for t, u in zip(v, use) if u] for k, v in times.items()})
    report["rounds"] = {
        "total": len(rounds),
        "quiet": int(sum(quiet)),
        "used": "quiet rounds only" if use is quiet else "all rounds (too few quiet ones)",
        "log": rounds,
    }
    report["all_rounds"] = summarize(rows, workers, times)["results"]
    report.update(
        settings={**vars(args), "feed": feed_info, "timed": "model compute only"},
        environment=environment(optimum),
        wall_s=round(time.perf_counter() - started, 1),
        loadavg_start=loadavg_start,
        loadavg_end=os.getloadavg(),
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def summarize(rows: list[dict[str, Any]], workers: list[dict[str, Any]], times: dict) -> dict[str, Any]:
    base_rounds = [np.median(t) for t in times[BASELINE]]
    reference = np.asarray(next(w for w in workers if w["name"] == "PyTorch FP32")["ready"]["logits"])
    results = []
    for row, worker in zip(rows, workers):
        rounds = times[row["name"]]
        flat = np.concatenate(rounds)
        logits = np.asarray(worker["ready"]["logits"])
        per_round = [np.median(t) / b for t, b in zip(rounds, base_rounds)]
        facts = worker["ready"]["facts"]
        results.append(
            {
                "variant": row["name"],
                "note": row.get("note", ""),
                "path": row["path"],
                "p50_ms": float(np.percentile(flat, 50)),
                "p90_ms": float(np.percentile(flat, 90)),
                "mean_ms": float(flat.mean()),
                "runs": int(flat.size),
                "round_ratio_median": float(np.median(per_round)),
                "round_ratio_q25": float(np.percentile(per_round, 25)),
                "round_ratio_q75": float(np.percentile(per_round, 75)),
                "accuracy": facts["accuracy"],
                "val_samples": int(len(logits)),
                "agreement_vs_pytorch_fp32": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
                "max_abs_logit_diff_vs_pytorch_fp32": float(np.abs(logits - reference).max()),
                "size_mb": facts["size_mb"],
                "facts": facts,
            }
        )
    base = next(r for r in results if r["variant"] == BASELINE)
    labels = np.asarray(workers[0]["ready"]["truth"])
    base_correct = np.asarray(next(w for w in workers if w["name"] == BASELINE)["ready"]["logits"]).argmax(-1) == labels
    for r, worker in zip(results, workers):
        r["ratio_vs_edgeptm_int8"] = r["p50_ms"] / base["p50_ms"]
        correct = np.asarray(worker["ready"]["logits"]).argmax(-1) == labels
        r["vs_edgeptm_int8_only_this_right"] = int((correct & ~base_correct).sum())
        r["vs_edgeptm_int8_only_edgeptm_right"] = int((~correct & base_correct).sum())
        r["mcnemar_p_vs_edgeptm_int8"] = mcnemar(
            r["vs_edgeptm_int8_only_this_right"], r["vs_edgeptm_int8_only_edgeptm_right"]
        )
    return {"baseline": BASELINE, "results": results}


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: are the two classifiers' accuracies different, given the
    sentences only one of them gets right (b, c)?"""
    from math import comb

    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def format_report(report: dict[str, Any]) -> str:
    s, env = report["settings"], report["environment"]
    rounds = report.get("rounds")
    lines = [
        f"batch 1, seq {s['seq_len']} ({s['feed']['real_tokens']} real tokens), {s['threads']} threads; "
        f"{rounds['total'] if rounds else s['rounds']} interleaved rounds x {s['per_round']} runs per variant, "
        "each variant in its own process; "
        f"{report['wall_s']} s",
        f"statistics over {rounds['used']}: {rounds['quiet']} of {rounds['total']} rounds were quiet "
        f"(others' CPU use <= {s['quiet_threshold']} before and after)"
        if rounds
        else "",
        "",
        "| variant | p50 ms | p90 ms | ratio vs edgeptm INT8 (p50) | per-round ratio median [IQR] | accuracy | "
        "McNemar p vs edgeptm INT8 | agree w/ PyTorch FP32 | size MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["results"]:
        p = "" if r["variant"] == BASELINE else format(r["mcnemar_p_vs_edgeptm_int8"], ".2f")
        lines.append(
            f"| {r['variant']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['ratio_vs_edgeptm_int8']:.3f} | "
            f"{r['round_ratio_median']:.3f} [{r['round_ratio_q25']:.2f}-{r['round_ratio_q75']:.2f}] | "
            f"{r['accuracy']:.4f} | {p} | "
            f"{r['agreement_vs_pytorch_fp32']:.3f} | {r['size_mb']:.1f} |"
        )
    lines.append(
        f"\naccuracy on {report['results'][0]['val_samples']} validation sentences; load average "
        f"{report['loadavg_start'][0]:.2f} at the start, {report['loadavg_end'][0]:.2f} at the end"
    )
    lines.append(f"cpu: {env['cpu']} ({', '.join(env['cpu_flags'])}), {env['cpu_count']} cores")
    lines.append("main venv: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    if env.get("optimum_venv"):
        lines.append("optimum venv (export only): " + ", ".join(f"{k} {v}" for k, v in env["optimum_venv"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        from multiprocessing.connection import Connection

        serve(Connection(int(sys.argv[2])), json.loads(sys.argv[3]))
    else:
        main()
