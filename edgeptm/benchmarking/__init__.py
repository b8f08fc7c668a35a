"""Benchmark harness: several artifacts side by side, each in its own process, interleaved.

What is timed is stated in every report: by default model compute only (the backend's ``run`` on
pre-tokenized arrays padded to ``seq_len``); with ``end_to_end`` tokenization and softmax too.
"""

from __future__ import annotations

import logging
import math
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeptm.sources import open_source
from edgeptm.benchmarking.report import speedups  # noqa: F401 - public here: bench(), then speedups(results)
from edgeptm.benchmarking.stats import summarize
from edgeptm.errors import BenchError, UsageError
from edgeptm.profiles import Profile, pick, resolve_profile

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 2
PAUSE_S = 0.05  # between rounds, so a worker's spinning threads go idle before the next one starts
SCENARIOS = ("single-stream", "offline")
SEARCH_SECONDS = 0.5  # offline: timed seconds per batch size tried
SAMPLES_KEPT = 1000  # latencies kept per result for plots (evenly spread over the run)
DEFAULT_PROMPT_LEN = 64  # generators: prompt tokens
GENERATION_RUNS = 5  # generators: timed requests per artifact (each ~0.1-10 s), unless --iterations


@dataclass
class BenchOptions:
    batch_size: int | None = None
    seq_len: int | None = None
    threads: int | None = None
    iterations: int | None = None
    warmup: int | None = None
    rounds: int = 10
    duration: float | None = None  # seconds of timed runs per artifact, instead of a run count
    end_to_end: bool = False  # the main figure is end to end (the end-to-end figure is always there too)
    backend: str | None = None
    profile: str | Profile | None = None
    # MLPerf's scenarios: single-stream times one query at a time (latency, p90 is its figure);
    # offline searches the batch size that maximises throughput and times that.
    scenario: str = "single-stream"
    # Sweeps: every combination is benchmarked; one an artifact cannot run becomes a row saying why.
    batch_sizes: list[int] | None = None
    seq_lens: list[int] | None = None
    image_sizes: list[int] | None = None
    thread_counts: list[int] | None = None
    providers: list[str] | None = None  # ONNX Runtime execution providers: cpu, cuda, ... (ort_backend.PROVIDERS)
    max_batch: int = 256  # offline: the largest batch size the search tries
    # Generators: prompt length(s) in tokens (a list sweeps) and tokens generated per run (EOS ignored).
    prompt_lens: list[int] | None = None
    new_tokens: int = 128
    # Digests ('sha256:...') of artifacts the caller vouches for: each must match one artifact, and
    # pins it (its native code, if any, loads without 'edgeptm trust').
    digests: tuple[str, ...] = ()

    def resolved(self) -> dict[str, Any]:
        profile = resolve_profile(self.profile)
        b = profile.bench if profile else None
        settings = {
            "batch_size": pick(self.batch_size, b and b.batch_size, 1),
            "seq_len": pick(self.seq_len, b and b.seq_len, 128),
            "threads": pick(self.threads, profile and profile.runtime.threads, None),
            "iterations": pick(self.iterations, b and b.iterations, 100),
            "warmup": pick(self.warmup, b and b.warmup, 10),
            "rounds": self.rounds,
            "duration": self.duration,
            "end_to_end": self.end_to_end,
            "scenario": self.scenario,
            "profile": profile.record() if profile else None,
        }
        if self.scenario not in SCENARIOS:
            raise UsageError(f"--scenario {self.scenario}: not one of {', '.join(SCENARIOS)}")
        for key in ("batch_size", "seq_len", "iterations", "rounds"):
            if settings[key] < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {settings[key]}")
        if settings["warmup"] < 0 or (settings["threads"] is not None and settings["threads"] < 1):
            raise UsageError("--warmup must be >= 0 and --threads >= 1")
        if settings["duration"] is not None and settings["duration"] <= 0:
            raise UsageError(f"--duration must be > 0 seconds, got {settings['duration']}")
        sweep = {
            "batch_size": self.batch_sizes or [settings["batch_size"]],
            "seq_len": self.seq_lens or [settings["seq_len"]],
            "image_size": self.image_sizes or [None],
            "threads": self.thread_counts or [settings["threads"]],
            "provider": self.providers or [None],
            "prompt_len": self.prompt_lens or [DEFAULT_PROMPT_LEN],
        }
        for key, values in sweep.items():
            if any(v is not None and isinstance(v, int) and v < 1 for v in values):
                raise UsageError(f"sweep {key}: every value must be >= 1, got {values}")
        if self.scenario == "offline" and self.batch_sizes:
            raise UsageError("--scenario offline searches the batch size itself: drop the batch-size list")
        if self.new_tokens < 1:
            raise UsageError(f"--new-tokens must be >= 1, got {self.new_tokens}")
        settings["sweep"] = sweep
        settings["max_batch"] = self.max_batch
        settings["new_tokens"] = self.new_tokens
        settings["generation_runs"] = self.iterations or GENERATION_RUNS
        return settings


def sweep_points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the swept settings, batch size varying fastest."""
    import itertools

    sweep = settings["sweep"]
    keys = ("provider", "threads", "prompt_len", "image_size", "seq_len", "batch_size")
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))]


def _applies(artifact: Any, point: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether a sweep point means anything for an artifact. Dimensions that do not (a sequence
    length for an image model, an ONNX Runtime provider for a PyTorch checkpoint) are not
    repeated: the artifact runs at their first value only."""
    sweep = settings["sweep"]
    text = artifact.view.text
    if not generative(artifact) and point["prompt_len"] != sweep["prompt_len"][0]:
        return False
    if generative(artifact):  # a prompt length, not a sequence length or a batch of inputs
        return point["seq_len"] == sweep["seq_len"][0] and point["image_size"] == sweep["image_size"][0]
    if not text and point["seq_len"] != sweep["seq_len"][0]:
        return False
    if text and point["image_size"] != sweep["image_size"][0]:
        return False
    return artifact.kind == "onnx" or point["provider"] == sweep["provider"][0]


def generative(artifact: Any) -> bool:
    return artifact.task == "text-generation"


def _static_shape_reason(artifact: Any, point: dict[str, Any]) -> str | None:
    """An image size an exported graph cannot take (its height and width are fixed)."""
    if generative(artifact):
        return None if point["batch_size"] == 1 else "a generator is timed one request at a time (batch 1)"
    size = point["image_size"]
    if size is None or artifact.kind == "checkpoint" or artifact.view.text:
        return None
    dims = artifact.view.inputs[0].shape
    if all(isinstance(d, int) for d in dims[2:]) and tuple(dims[2:]) != (size, size):
        return (
            f"the graph's input is fixed at {dims[2]}x{dims[3]}; for {size}x{size} fine-tune or export at that "
            "size (--image-size)"
        )
    return None


def bench(paths: list[str | Path], options: BenchOptions | None = None) -> dict[str, Any]:
    """Time artifacts side by side, at every point of the sweep; returns a report (schema 2).

    Within a point the artifacts run interleaved, each in its own process. A combination an
    artifact cannot run (a static shape, a missing provider, beyond an engine's profile) is a row
    with ``status: unrunnable`` and the reason, not an error."""
    from edgeptm.benchmarking.worker import REWARM  # not at import: the worker runs as __main__
    from edgeptm.environment import describe

    options = options or BenchOptions()
    settings = options.resolved()
    if not paths:
        raise UsageError("bench needs at least one artifact")
    artifacts = [open_source(p) for p in paths]  # verify everything before spending time
    _check_trust(artifacts, options)
    results: list[dict[str, Any]] = []
    plan = ""
    for point in sweep_points(settings):
        chosen = [a for a in artifacts if _applies(a, point, settings)]
        rows, plan = _bench_point(chosen, options.backend, settings, point)
        results.extend(rows)
    ok = [r for r in results if r["status"] == "ok"]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timed": "; ".join(sorted({r["timed"] for r in ok})),
        "method": f"{settings['scenario']} scenario; each artifact in its own process; {plan} after at least "
        f"{settings['warmup']} warm-up runs (more until two 5-run block medians agree within 5%), "
        f"{REWARM} untimed runs opening each round; end to end (preprocessing + run + postprocessing) timed "
        "after each round's compute runs, a quarter as many; latencies from time.perf_counter_ns"
        + (
            f"; offline: throughput measured for {SEARCH_SECONDS:g} s at batch 1, 2, 4, ... up to "
            f"{settings['max_batch']} (or the engine's maximum) until it falls 3% below the best, then the "
            "smallest batch within 3% of the best throughput is timed"
            if settings["scenario"] == "offline"
            else ""
        ),
        "settings": settings,
        "environment": describe(),
        "results": results,
    }


def _row(artifact: Any, point: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    manifest = artifact.manifest
    text = artifact.view.text
    if generative(artifact):
        metrics = manifest.get("metrics") or {}
        return {
            "artifact": str(artifact.path),
            "variant": artifact.path.name,
            "kind": artifact.kind,
            "precision": manifest.get("precision"),
            "scenario": "generation",
            "batch_size": point["batch_size"],
            "seq_len": None,
            "image_size": None,
            "prompt_len": point["prompt_len"],
            "new_tokens": settings["new_tokens"],
            "threads": point["threads"],
            "provider": point["provider"] if artifact.kind == "onnx" else None,
            "size_mb": artifact.size_bytes(["model", "weights"]) / 1e6,
            "accuracy": None,
            "perplexity": metrics.get("perplexity"),
        }
    return {
        "artifact": str(artifact.path),
        "variant": artifact.path.name,
        "kind": artifact.kind,
        "precision": manifest.get("precision"),
        "scenario": settings["scenario"],
        "batch_size": point["batch_size"],
        "seq_len": point["seq_len"] if text else None,  # tokenized inputs only
        "image_size": (point["image_size"] or artifact.preprocessing.get("crop")) if not text else None,
        "threads": point["threads"],
        "provider": point["provider"] if artifact.kind == "onnx" else None,
        "size_mb": artifact.size_bytes(["model", "weights"]) / 1e6,
        "accuracy": manifest.get("metrics", {}).get("accuracy"),
    }


def _bench_point(
    artifacts: list[Any], backend: str | None, settings: dict[str, Any], point: dict[str, Any]
) -> tuple[list[dict[str, Any]], str]:
    """One sweep point: start a worker per artifact, (offline: search its batch), interleave rounds."""
    rows = [_row(a, point, settings) for a in artifacts]
    workers: list[dict[str, Any] | None] = []
    try:
        for artifact, row in zip(artifacts, rows):
            reason = _static_shape_reason(artifact, point)
            worker = None
            if reason is None:
                try:
                    worker = _start(artifact, backend, {**settings, **point})
                    if settings["scenario"] == "offline":
                        _search(worker, row, settings)
                except BenchError as exc:
                    reason = str(exc).split(": ", 1)[-1]
                    if worker is not None:
                        _stop(worker)
                        worker = None
            if reason is not None:
                row.update(status="unrunnable", reason=reason)
            workers.append(worker)
        live = [i for i, w in enumerate(workers) if w is not None]
        if settings["duration"]:
            rounds = settings["rounds"]
            ask, per_round = "run_for", settings["duration"] / rounds
            plan = f"{rounds} interleaved rounds of {per_round:.2f} s"
        else:
            runs = (
                settings["generation_runs"] if artifacts and all(map(generative, artifacts)) else settings["iterations"]
            )
            rounds = min(settings["rounds"], runs)
            ask, per_round = "run", math.ceil(runs / rounds)
            plan = f"{rounds} interleaved rounds of {per_round} runs"
        times: dict[int, list[float]] = {i: [] for i in live}
        e2e: dict[int, list[float]] = {i: [] for i in live}
        infos = {i: workers[i]["info"] for i in live}
        peaks: dict[int, float] = {}
        gen: dict[int, dict[str, list[float]]] = {i: {"ttft": [], "steps": []} for i in live}
        for r in range(rounds):
            # Rotate the starting worker each round: no variant always runs first after the pause.
            for k in range(len(live)):
                i = live[(r + k) % len(live)]
                if workers[i] is None:
                    continue
                try:
                    reply = _ask(workers[i], (ask, per_round))
                except BenchError as exc:
                    rows[i].update(status="failed", reason=str(exc).split(": ", 1)[-1])
                    _stop(workers[i])
                    workers[i] = None
                    continue
                times[i].extend(reply["times"])
                for key in ("ttft", "steps"):
                    gen[i][key].extend(reply.get(key) or [])
                e2e[i].extend(reply["e2e"])
                peaks[i] = reply["peak_rss_mb"]
                time.sleep(PAUSE_S)
    finally:
        for worker in workers:
            if worker is not None:
                _stop(worker)
    for i in live:
        if "status" not in rows[i]:
            rows[i].update(_timed(infos[i], times[i], e2e[i], rows[i]["batch_size"], peaks[i]))
            if gen[i]["ttft"]:
                rows[i].update(generation_figures(gen[i]["ttft"], gen[i]["steps"]))
                # a run is a whole request: few of them, each hundreds of timed decode steps
                rows[i]["warnings"] = [w for w in rows[i]["warnings"] if not w.startswith("short:")]
    for row in rows:
        row.setdefault("status", "ok")
    return rows, plan


def generation_figures(ttft: list[float], steps: list[float]) -> dict[str, Any]:
    """Time to first token (median over runs) and decode speed (1000 / the median decode step over
    every generated token of every run: one slow step does not move it)."""
    import statistics

    step = statistics.median(steps) if steps else None
    return {
        "ttft_ms": statistics.median(ttft),
        "ttft_p90_ms": sorted(ttft)[min(len(ttft) - 1, int(0.9 * len(ttft)))],
        "decode_ms_per_token": step,
        "decode_tokens_per_s": 1000.0 / step if step else None,
        "decode_steps": len(steps),
    }


def _search(worker: dict[str, Any], row: dict[str, Any], settings: dict[str, Any]) -> None:
    """Offline scenario: find the batch size with the best throughput, then configure the worker
    for it. The smallest batch within 3% of the best wins (as fast, less latency and memory)."""
    limit = min(settings["max_batch"], worker["info"].get("max_batch") or settings["max_batch"])
    candidates = [2**k for k in range(0, 20) if 2**k <= limit]
    found = _ask(worker, ("search", {"candidates": candidates, "seconds": SEARCH_SECONDS}), expect="searched")
    measured = [f for f in found if "throughput_per_s" in f]
    if not measured:
        raise BenchError(f"{worker['path']}: offline search could not run batch 1 ({found[0].get('stopped')})")
    top = max(f["throughput_per_s"] for f in measured)
    best = min(f["batch_size"] for f in measured if f["throughput_per_s"] >= top / 1.03)
    worker["info"] = _ask(worker, ("configure", best), expect="ready")
    row.update(batch_size=best, search=found)


def _timed(
    info: dict[str, Any], times: list[float], e2e: list[float], batch_size: int, peak_rss_mb: float | None
) -> dict[str, Any]:
    """A result's figures from its worker's latencies."""
    stats = summarize(times, batch_size)
    step = max(1, len(times) // SAMPLES_KEPT)
    end_to_end = None
    if e2e:
        e = summarize(e2e, batch_size)
        end_to_end = {"p50_ms": e["p50_ms"], "p90_ms": e["p90_ms"], "mean_ms": e["mean_ms"], "runs": e["iterations"]}
        end_to_end["timed"] = info["timed_end_to_end"]
    return {
        "backend": info["backend"],
        "backend_settings": info.get("backend_settings"),
        "timed": info["timed"],
        **stats,
        "end_to_end": end_to_end,
        "load_s": info["load_s"],
        "first_inference_ms": info["first_inference_ms"],
        "warmup_runs": info["warmup_runs"],
        "warmup_settled": info["warmup_settled"],
        "peak_rss_mb": peak_rss_mb,
        "warnings": trust_warnings(stats, info),
        "samples_ms": [round(t, 4) for t in times[::step][:SAMPLES_KEPT]],
    }


def _check_trust(artifacts: list[Any], options: BenchOptions) -> None:
    """Pins first, then refuse (before any worker starts) an artifact whose native code nobody
    trusts. Workers get each artifact's digest, so they load exactly what was checked here."""
    from edgeptm import trust
    from edgeptm.runtime.base import native_code

    pins = {trust.check_digest_arg(d) for d in options.digests}
    for artifact in artifacts:
        if artifact.digest in pins:
            trust.pin(artifact, artifact.digest)
    unmatched = sorted(pins - {a.digest for a in artifacts})
    if unmatched:
        raise UsageError(f"--digest {unmatched[0]}: matches none of the artifacts (see 'edgeptm verify DIR')")
    for artifact in artifacts:
        native = native_code(artifact, options.backend)
        if native:
            trust.require(artifact, "; ".join(native))


def _start(artifact: Any, backend: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """A fresh interpreter running ``edgeptm.benchmarking.worker``, talking over a socket pair.

    A plain subprocess rather than multiprocessing's spawn: spawn re-imports the caller's main
    module, which breaks scripts without an ``if __name__ == "__main__"`` guard.
    """
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    # The digest pins the worker to the artifact checked in this process (and carries its trust).
    digest = artifact.digest if artifact.trust else None
    config = {"path": str(artifact.path), "backend": backend, "digest": digest, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeptm.benchmarking.worker", str(theirs.fileno()), json.dumps(config)],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    worker = {"process": process, "conn": Connection(ours.detach()), "path": artifact.path}
    try:
        worker["info"] = _ask(worker, None, expect="ready")
    except BenchError:
        _stop(worker)
        raise
    return worker


def _ask(worker: dict[str, Any], message: Any, expect: str = "times") -> Any:
    try:
        if message is not None:
            worker["conn"].send(message)
        kind, payload = worker["conn"].recv()
    except (EOFError, OSError):
        raise BenchError(f"{worker['path']}: benchmark worker died (exit code {worker['process'].poll()})") from None
    if kind == "error":
        raise BenchError(f"{worker['path']}: {payload}")
    if kind != expect:
        raise BenchError(f"{worker['path']}: benchmark worker answered '{kind}', expected '{expect}'")
    return payload


def _stop(worker: dict[str, Any]) -> None:
    try:
        worker["conn"].send(("stop", 0))
    except (OSError, BrokenPipeError):
        pass
    try:
        worker["process"].wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker["process"].kill()
        worker["process"].wait()
    worker["conn"].close()


NOISY_CV = 0.10  # std/mean above this: the run mixes in noise that will not repeat
MIN_ITERATIONS = 50  # fewer timed runs make p90/p99 anecdotes
MIN_TIMED_S = 1.0


def trust_warnings(stats: dict[str, float], info: dict[str, Any]) -> list[str]:
    """Why a result should not be trusted as it stands (empty when nothing is wrong)."""
    warnings = []
    if stats["cv"] > NOISY_CV:
        warnings.append(f"noisy: coefficient of variation {stats['cv']:.3f} > {NOISY_CV}; rerun on a quieter machine")
    if stats["iterations"] < MIN_ITERATIONS:
        warnings.append(f"short: {stats['iterations']} timed runs < {MIN_ITERATIONS}; tail percentiles are unreliable")
    if stats["mean_ms"] * stats["iterations"] / 1000 < MIN_TIMED_S:
        warnings.append(f"short: under {MIN_TIMED_S:g} s of timed runs in all")
    if not info["warmup_settled"]:
        warnings.append(f"latency had not settled after {info['warmup_runs']} warm-up runs")
    return warnings
