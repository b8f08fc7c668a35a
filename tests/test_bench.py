from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeptm.benchmarking import BenchOptions, bench, speedups
from edgeptm.benchmarking.stats import summarize
from edgeptm.errors import ArtifactError, UsageError

REQUIRED = (
    "artifact",
    "backend",
    "batch_size",
    "seq_len",
    "threads",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "size_mb",
    "accuracy",
)


def test_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0], batch_size=2)
    assert s["p50_ms"] == 3.0 and s["min_ms"] == 1.0 and s["max_ms"] == 100.0
    assert s["mean_ms"] == 22.0 and s["throughput_per_s"] == pytest.approx(2000 / 22.0)
    assert s["p50_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]


def test_bench_side_by_side(tiny_checkpoint, tiny_onnx, tiny_int8):
    report = bench(
        [tiny_checkpoint.path, tiny_onnx.path, tiny_int8.path],
        BenchOptions(batch_size=2, seq_len=16, threads=1, iterations=12, warmup=2, rounds=3),
    )
    assert report["schema_version"] == 1 and "model compute only" in report["timed"]
    assert report["environment"]["packages"]["onnxruntime"]
    backends = [r["backend"] for r in report["results"]]
    assert backends == ["torch-eager", "onnxruntime-cpu", "onnxruntime-cpu"]
    for r in report["results"]:
        assert all(k in r for k in REQUIRED)
        assert r["iterations"] == 12 and r["batch_size"] == 2 and r["seq_len"] == 16 and r["threads"] == 1
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["size_mb"] > 0 and 0 <= r["accuracy"] <= 1
    assert speedups(report["results"])[0] == 1.0
    json.dumps(report)  # serialisable


def test_end_to_end_mode_is_labelled(tiny_onnx):
    report = bench([tiny_onnx.path], BenchOptions(iterations=3, warmup=0, rounds=1, end_to_end=True, seq_len=8))
    assert report["timed"].startswith("end to end")


def test_profile_sets_shapes(tiny_onnx):
    report = bench([tiny_onnx.path], BenchOptions(profile="cpu-arm64", iterations=2, warmup=0, rounds=1))
    s = report["settings"]
    assert (s["batch_size"], s["seq_len"], s["threads"]) == (1, 128, 4)
    assert report["results"][0]["iterations"] == 2  # explicit options beat the profile's 100


def test_bad_inputs(tmp_path: Path, tiny_onnx):
    with pytest.raises(ArtifactError):
        bench([tmp_path / "nothing"])
    with pytest.raises(UsageError):
        bench([tiny_onnx.path], BenchOptions(batch_size=0))
