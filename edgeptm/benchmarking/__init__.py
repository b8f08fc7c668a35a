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

from edgeptm.artifacts import open_artifact
from edgeptm.benchmarking.stats import summarize
from edgeptm.errors import BenchError, UsageError
from edgeptm.profiles import Profile, pick, resolve_profile

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1
PAUSE_S = 0.05  # between rounds, so a worker's spinning threads go idle before the next one starts


@dataclass
class BenchOptions:
    batch_size: int | None = None
    seq_len: int | None = None
    threads: int | None = None
    iterations: int | None = None
    warmup: int | None = None
    rounds: int = 10
    duration: float | None = None  # seconds of timed runs per artifact, instead of a run count
    end_to_end: bool = False
    backend: str | None = None
    profile: str | Profile | None = None

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
            "profile": profile.record() if profile else None,
        }
        for key in ("batch_size", "seq_len", "iterations", "rounds"):
            if settings[key] < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {settings[key]}")
        if settings["warmup"] < 0 or (settings["threads"] is not None and settings["threads"] < 1):
            raise UsageError("--warmup must be >= 0 and --threads >= 1")
        if settings["duration"] is not None and settings["duration"] <= 0:
            raise UsageError(f"--duration must be > 0 seconds, got {settings['duration']}")
        return settings


def bench(paths: list[str | Path], options: BenchOptions | None = None) -> dict[str, Any]:
    """Time artifacts side by side; returns a report (see ``REPORT_SCHEMA_VERSION``)."""
    from edgeptm.environment import describe

    options = options or BenchOptions()
    settings = options.resolved()
    if not paths:
        raise UsageError("bench needs at least one artifact")
    artifacts = [open_artifact(p) for p in paths]  # verify everything before spending time
    workers = []
    try:
        for artifact in artifacts:
            workers.append(_start(artifact, options.backend, settings))
        if settings["duration"]:
            rounds = settings["rounds"]
            ask, per_round = "run_for", settings["duration"] / rounds
            plan = f"{rounds} interleaved rounds of {per_round:.2f} s"
        else:
            rounds = min(settings["rounds"], settings["iterations"])
            ask, per_round = "run", math.ceil(settings["iterations"] / rounds)
            plan = f"{rounds} interleaved rounds of {per_round} runs"
        times: list[list[float]] = [[] for _ in workers]
        for r in range(rounds):
            # Rotate the starting worker each round: no variant always runs first after the pause.
            for k in range(len(workers)):
                i = (r + k) % len(workers)
                reply = _ask(workers[i], (ask, per_round))
                times[i].extend(reply["times"])
                workers[i]["peak_rss_mb"] = reply["peak_rss_mb"]
                time.sleep(PAUSE_S)
    finally:
        for worker in workers:
            _stop(worker)
    results = []
    for artifact, worker, latencies in zip(artifacts, workers, times):
        manifest = artifact.manifest
        stats = summarize(latencies, settings["batch_size"])
        results.append(
            {
                "artifact": str(artifact.path),
                "kind": artifact.kind,
                "backend": worker["info"]["backend"],
                "precision": manifest.get("precision"),
                "batch_size": settings["batch_size"],
                "seq_len": settings["seq_len"] if "max_length" in artifact.preprocessing else None,  # tokenized
                "threads": settings["threads"],
                "timed": worker["info"]["timed"],
                **stats,
                "load_s": worker["info"]["load_s"],
                "first_inference_ms": worker["info"]["first_inference_ms"],
                "warmup_runs": worker["info"]["warmup_runs"],
                "warmup_settled": worker["info"]["warmup_settled"],
                "peak_rss_mb": worker["peak_rss_mb"],
                "warnings": trust_warnings(stats, worker["info"]),
                "size_mb": artifact.size_bytes(["model", "weights"]) / 1e6,
                "accuracy": manifest.get("metrics", {}).get("accuracy"),
            }
        )
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timed": "; ".join(sorted({r["timed"] for r in results})),
        "method": f"each artifact in its own process; {plan} after at least {settings['warmup']} warm-up runs "
        "(more until two 5-run block medians agree within 5%), 2 untimed runs opening each round; "
        "latencies from time.perf_counter_ns",
        "settings": settings,
        "environment": describe(),
        "results": results,
    }


def _start(artifact: Any, backend: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """A fresh interpreter running ``edgeptm.benchmarking.worker``, talking over a socket pair.

    A plain subprocess rather than multiprocessing's spawn: spawn re-imports the caller's main
    module, which breaks scripts without an ``if __name__ == "__main__"`` guard.
    """
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    config = {"path": str(artifact.path), "backend": backend, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeptm.benchmarking.worker", str(theirs.fileno()), json.dumps(config)],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    worker = {"process": process, "conn": Connection(ours.detach()), "path": artifact.path}
    worker["info"] = _ask(worker, None, expect="ready")
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


def speedups(results: list[dict[str, Any]]) -> list[float]:
    """p50 of the baseline (the first PyTorch result, else the first) over each result's p50."""
    base = next((r for r in results if r["backend"].startswith("torch")), results[0])
    return [base["p50_ms"] / r["p50_ms"] for r in results]
