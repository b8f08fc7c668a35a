"""Latency statistics (milliseconds)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def summarize(latencies_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    x = np.asarray(latencies_ms, dtype=np.float64)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, [50, 90, 95, 99]))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean else 0.0,
        "min_ms": float(x.min()),
        "max_ms": float(x.max()),
        "throughput_per_s": batch_size * 1000.0 / mean if mean else 0.0,
        "iterations": int(len(x)),
    }
