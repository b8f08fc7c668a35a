"""One benchmark worker process: loads one artifact and times it on command.

Each artifact runs in its own process because runtimes in one process steal each other's cores
(torch's OpenMP threads keep spinning after a call; ONNX Runtime's pool spins too). The parent
interleaves short rounds across workers so that drifts in machine load hit every variant alike.
"""

from __future__ import annotations

import time
from typing import Any


def serve(conn: Any, config: dict[str, Any]) -> None:
    try:
        _serve(conn, config)
    except Exception as exc:  # reported to the parent, which turns it into a BenchError row
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        conn.close()


def _serve(conn: Any, config: dict[str, Any]) -> None:
    from edgeptm.artifacts import open_artifact
    from edgeptm.runtime import load

    started = time.perf_counter()
    artifact = open_artifact(config["path"])
    predictor = load(artifact, config.get("backend"), config["threads"])
    load_s = time.perf_counter() - started
    pre = predictor.preprocessor
    inputs = pre.sample_inputs(config["batch_size"])
    seq_len = config["seq_len"]
    feed = predictor.encode(inputs, seq_len)
    run = predictor.backend.run

    if config["end_to_end"]:

        def call() -> None:
            predictor.postprocess(next(iter(run(predictor.encode(inputs, seq_len)).values())))
    else:

        def call() -> None:
            run(feed)

    tick = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - tick) * 1000
    warmup_runs, settled = settle(call, config["warmup"])
    conn.send(
        (
            "ready",
            {
                "backend": predictor.backend.name,
                "timed": pre.timed_end_to_end if config["end_to_end"] else pre.timed_compute,
                "load_s": load_s,
                "first_inference_ms": first_ms,
                "warmup_runs": warmup_runs,
                "warmup_settled": settled,
            },
        )
    )
    clock = time.perf_counter_ns
    while True:
        message, amount = conn.recv()
        if message == "stop":
            break
        for _ in range(REWARM):  # wake the thread pool that idled while the other workers ran
            call()
        times: list[float] = []
        deadline = clock() + int(amount * 1e9) if message == "run_for" else None
        while (len(times) < amount) if deadline is None else (clock() < deadline or not times):
            t0 = clock()
            call()
            times.append((clock() - t0) / 1e6)
        conn.send(("times", {"times": times, "peak_rss_mb": peak_rss_mb()}))
    predictor.close()


REWARM = 2  # untimed runs at the start of every round
SETTLE_BLOCK = 5  # runs per warm-up block
SETTLE_TOLERANCE = 0.05  # consecutive block medians within 5%: latency has settled
SETTLE_MAX_S = 30.0


def settle(call: Any, minimum: int) -> tuple[int, bool]:
    """Warm up: at least ``minimum`` runs, then blocks until two consecutive block medians agree.

    Caches, allocator pools and lazy kernel selection make the first runs slow; how many runs that
    takes differs per runtime, so it is measured, not guessed. Returns (runs, settled).
    """
    import statistics

    for _ in range(minimum):
        call()
    runs, previous, started = minimum, None, time.perf_counter()
    limit = max(10 * minimum, 200)
    while runs < limit and time.perf_counter() - started < SETTLE_MAX_S:
        block = []
        for _ in range(SETTLE_BLOCK):
            t0 = time.perf_counter()
            call()
            block.append(time.perf_counter() - t0)
        runs += SETTLE_BLOCK
        median = statistics.median(block)
        if previous is not None and abs(median - previous) <= SETTLE_TOLERANCE * previous:
            return runs, True
        previous = median
    return runs, False


def peak_rss_mb() -> float:
    """Peak resident memory of this process (the worker serving one artifact), in MB.

    Linux: VmHWM, the high-water mark of this process's own address space. ``ru_maxrss`` is not
    used there: the kernel carries it across fork + exec, so a worker started by a parent that
    had grown large (one that just exported a model) would report the parent's peak.
    """
    import resource
    import sys

    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux


if __name__ == "__main__":  # python -m edgeptm.benchmarking.worker FD CONFIG_JSON (started by bench)
    import json
    import sys
    from multiprocessing.connection import Connection

    serve(Connection(int(sys.argv[1])), json.loads(sys.argv[2]))
