"""One benchmark worker process: loads one artifact and times it on command.

Each artifact runs in its own process because runtimes in one process steal each other's cores
(torch's OpenMP threads keep spinning after a call; ONNX Runtime's pool spins too). The parent
interleaves short rounds across workers so that drifts in machine load hit every variant alike.
"""

from __future__ import annotations

import time
from typing import Any

FALLBACK_TEXT = "A thoughtful, well acted and quietly funny film that stays with you after the credits."


def serve(conn: Any, config: dict[str, Any]) -> None:
    try:
        _serve(conn, config)
    except Exception as exc:  # reported to the parent, which turns it into a BenchError row
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        conn.close()


def _serve(conn: Any, config: dict[str, Any]) -> None:
    import numpy as np

    from edgeptm.artifacts import open_artifact
    from edgeptm.runtime import load
    from edgeptm.runtime.predictor import softmax

    started = time.perf_counter()
    artifact = open_artifact(config["path"])
    predictor = load(artifact, config.get("backend"), config["threads"])
    load_s = time.perf_counter() - started
    texts = _sample_texts(artifact, config["batch_size"])
    seq_len = config["seq_len"]
    feed = predictor.encode(texts, seq_len)
    run = predictor.backend.run

    if config["end_to_end"]:

        def call() -> None:
            softmax(next(iter(run(predictor.encode(texts, seq_len)).values())).astype(np.float64))
    else:

        def call() -> None:
            run(feed)

    tick = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - tick) * 1000
    for _ in range(config["warmup"]):
        call()
    conn.send(("ready", {"backend": predictor.backend.name, "load_s": load_s, "first_inference_ms": first_ms}))
    clock = time.perf_counter_ns
    while True:
        message, count = conn.recv()
        if message == "stop":
            break
        times = []
        for _ in range(count):
            t0 = clock()
            call()
            times.append((clock() - t0) / 1e6)
        conn.send(("times", times))
    predictor.close()


def _sample_texts(artifact: Any, batch_size: int) -> list[str]:
    """Real sentences from the artifact's validation data, so tokens look like production's."""
    texts: list[str] = []
    if artifact.has_file("val_data"):
        from edgeptm.data.text import artifact_val_data

        texts = artifact_val_data(artifact).texts[:batch_size]
    texts = texts or [FALLBACK_TEXT]
    return [texts[i % len(texts)] for i in range(batch_size)]
