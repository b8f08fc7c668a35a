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


class Session:
    """One loaded artifact and the feed it is timed on (re-made when the batch size changes)."""

    def __init__(self, config: dict[str, Any]) -> None:
        from edgeptm.artifacts import open_artifact
        from edgeptm.runtime import load

        self.config = config
        started = time.perf_counter()
        artifact = open_artifact(config["path"])
        self.predictor = load(
            artifact, config.get("backend"), config["threads"], config.get("provider"), config.get("digest")
        )
        self.load_s = time.perf_counter() - started
        self.generative = artifact.task == "text-generation"
        self.ttft: list[float] = []
        self.steps: list[float] = []
        self.first_ms: float | None = None
        if self.generative:
            return
        self.pre = self.predictor.preprocessor
        if config.get("image_size"):
            self.pre = self.pre.at_size(config["image_size"])

    def prepare(self, batch_size: int) -> dict[str, Any]:
        """Build the feed for ``batch_size``, run it once (cold start the first time), warm up."""
        if self.generative:
            return self.prepare_generation()
        predictor, pre, seq_len = self.predictor, self.pre, self.config["seq_len"]
        inputs = pre.sample_inputs(batch_size)
        feed = pre.encode(inputs, seq_len)
        run = predictor.backend.run

        def end_to_end() -> None:
            predictor.postprocess(next(iter(run(pre.encode(inputs, seq_len)).values())))

        def compute() -> None:
            run(feed)

        self.e2e = end_to_end
        self.call = end_to_end if self.config["end_to_end"] else compute
        tick = time.perf_counter()
        self.call()
        first_ms = (time.perf_counter() - tick) * 1000
        self.first_ms = first_ms if self.first_ms is None else self.first_ms
        warmup_runs, settled = settle(self.call, self.config["warmup"])
        return {
            "backend": predictor.backend.name,
            "timed": pre.timed_end_to_end if self.config["end_to_end"] else pre.timed_compute,
            "timed_end_to_end": pre.timed_end_to_end,
            "load_s": self.load_s,
            "first_inference_ms": self.first_ms,
            "warmup_runs": warmup_runs,
            "warmup_settled": settled,
            "max_batch": getattr(predictor.backend, "max_batch", None),
            "backend_settings": getattr(predictor.backend, "settings", None),
            "batch_size": batch_size,
        }

    def prepare_generation(self) -> dict[str, Any]:
        """A generator: one run is one request - a ``prompt_len``-token prompt, then ``new_tokens``
        tokens greedily (EOS ignored, so every run generates the same count)."""
        generator, length, new = self.predictor, self.config["prompt_len"], self.config["new_tokens"]
        ids = prompt_of_length(generator.tokenizer, length)

        def generate() -> None:
            steps = [ms for _, ms in generator.generate_ids(ids, new, ignore_eos=True)]
            self.ttft.append(steps[0])
            self.steps.extend(steps[1:])

        self.call = self.e2e = generate
        self.wake = lambda: list(generator.generate_ids(ids[:8], 2, ignore_eos=True))  # threads up, no record
        tick = time.perf_counter()
        generate()
        self.first_ms = (time.perf_counter() - tick) * 1000 if self.first_ms is None else self.first_ms
        self.ttft.clear()
        self.steps.clear()
        return {
            "backend": generator.name,
            "timed": f"one request: a {length}-token prompt (prefill) and {new} generated tokens, greedy, "
            "sampling included, tokenization excluded",
            "timed_end_to_end": "the same",
            "load_s": self.load_s,
            "first_inference_ms": self.first_ms,
            "warmup_runs": 1,
            "warmup_settled": True,
            "max_batch": 1,
            "backend_settings": getattr(generator.backend, "settings", None),
            "batch_size": 1,
        }

    def drain(self) -> dict[str, list[float]]:
        """The generation figures gathered since the last call."""
        out = {"ttft": list(self.ttft), "steps": list(self.steps)}
        self.ttft.clear()
        self.steps.clear()
        return out

    def time(self, call: Any, message: str, amount: float) -> list[float]:
        clock = time.perf_counter_ns
        wake = getattr(self, "wake", None) or call
        for _ in range(REWARM):  # wake the thread pool that idled while the other workers ran
            wake()
        times: list[float] = []
        deadline = clock() + int(amount * 1e9) if message == "run_for" else None
        while (len(times) < amount) if deadline is None else (clock() < deadline or not times):
            t0 = clock()
            call()
            times.append((clock() - t0) / 1e6)
        return times

    def search(self, candidates: list[int], seconds: float) -> list[dict[str, float]]:
        """Offline scenario: throughput at growing batch sizes, until it stops growing."""
        import statistics

        found: list[dict[str, float]] = []
        for batch in candidates:
            try:
                self.prepare(batch)
            except Exception as exc:  # out of memory, beyond an engine's profile: the search ends here
                found.append({"batch_size": batch, "stopped": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
                break
            times = self.time(self.call, "run_for", seconds)
            p50 = statistics.median(times)
            found.append({"batch_size": batch, "throughput_per_s": batch * 1000.0 / p50, "p50_ms": p50})
            best = max(f.get("throughput_per_s", 0) for f in found)
            if found[-1]["throughput_per_s"] < best / OFFLINE_GAIN and len(found) > 2:
                break  # past the peak
        return found


def _serve(conn: Any, config: dict[str, Any]) -> None:
    session = Session(config)
    conn.send(("ready", session.prepare(config["batch_size"])))
    while True:
        message, amount = conn.recv()
        if message == "stop":
            break
        if message == "search":
            conn.send(("searched", session.search(amount["candidates"], amount["seconds"])))
            continue
        if message == "configure":
            conn.send(("ready", session.prepare(amount)))
            continue
        times = session.time(session.call, message, amount)
        # End to end (preprocessing + run + postprocessing) as its own, smaller sample of the round.
        if session.generative:  # a run is already a whole request; no separate end-to-end sample
            conn.send(("times", {"times": times, "e2e": [], "peak_rss_mb": peak_rss_mb(), **session.drain()}))
            continue
        e2e = [] if not config.get("e2e", True) else session.time(session.e2e, message, _quarter(message, amount))
        conn.send(("times", {"times": times, "e2e": e2e, "peak_rss_mb": peak_rss_mb()}))
    session.predictor.close()


def _quarter(message: str, amount: float) -> float:
    return amount / 4 if message == "run_for" else max(3, int(amount) // 4)


# The benchmark prompt: plain English, repeated until it is long enough, then cut to the length asked.
PROMPT_TEXT = (
    "The city council met on Tuesday evening to discuss the new library, which has been closed for repairs "
    "since the spring floods. Residents asked when the children's reading room would open again, and the "
    "architect explained that the roof, the heating and the old wooden shelves all had to be replaced. "
)


def prompt_of_length(tokenizer: Any, length: int) -> list[int]:
    ids = tokenizer.encode(PROMPT_TEXT)
    if not ids:
        raise ValueError("the tokenizer gives no tokens for the benchmark prompt")
    return (ids * (length // len(ids) + 1))[:length]


OFFLINE_GAIN = 1.03  # a batch size must beat the best so far by 3% to keep the search going
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

    from edgeptm.environment import silence_known_warnings

    silence_known_warnings()
    serve(Connection(int(sys.argv[1])), json.loads(sys.argv[2]))
