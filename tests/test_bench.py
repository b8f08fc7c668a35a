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
    "warmup_runs",
    "warmup_settled",
    "peak_rss_mb",
    "load_s",
    "first_inference_ms",
    "warnings",
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
    assert report["schema_version"] == 2 and "model compute only" in report["timed"]
    assert report["environment"]["packages"]["onnxruntime"]
    backends = [r["backend"] for r in report["results"]]
    assert backends == ["torch-eager", "onnxruntime-cpu", "onnxruntime-cpu"]
    # what each runtime ran with, as it reports it: one thread asked, one thread used
    settings = [r["backend_settings"] for r in report["results"]]
    assert settings[0]["intra_op_threads"] == 1 and settings[0]["mode"] == "eager"
    assert settings[1]["providers"] == ["CPUExecutionProvider"] and settings[1]["intra_op_threads"] == 1
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


def test_duration_mode_and_cold_start_figures(tiny_onnx):
    report = bench([tiny_onnx.path], BenchOptions(duration=0.6, rounds=3, warmup=2, seq_len=8, threads=1))
    r = report["results"][0]
    assert "rounds of 0.20 s" in report["method"]
    assert r["iterations"] >= 3 and r["mean_ms"] * r["iterations"] >= 0.5 * 600 * 0.5  # most of 0.6 s was timed
    assert r["warmup_runs"] >= 2 and isinstance(r["warmup_settled"], bool)
    assert r["load_s"] > 0 and r["first_inference_ms"] > 0
    assert 20 < r["peak_rss_mb"] < 4000  # the worker's own process, not the parent's


def test_trust_warnings():
    from edgeptm.benchmarking import trust_warnings

    quiet = {"cv": 0.02, "iterations": 500, "mean_ms": 5.0}
    assert trust_warnings(quiet, {"warmup_settled": True, "warmup_runs": 15}) == []
    noisy = trust_warnings({"cv": 0.3, "iterations": 20, "mean_ms": 1.0}, {"warmup_settled": False, "warmup_runs": 200})
    assert any("noisy" in w for w in noisy) and any("20 timed runs" in w for w in noisy)
    assert any("under 1 s" in w for w in noisy) and any("not settled after 200" in w for w in noisy)


def test_bad_duration(tiny_onnx):
    with pytest.raises(UsageError, match="--duration must be > 0"):
        bench([tiny_onnx.path], BenchOptions(duration=0))


def _report(tmp_path: Path, name: str, p50: dict[str, float], cpu: str = "cpu A") -> Path:
    results = [
        {
            "artifact": f"/runs/{k}",
            "backend": "onnxruntime-cpu",
            "batch_size": 1,
            "seq_len": 128,
            "threads": 2,
            "p50_ms": v,
            "p90_ms": v * 1.2,
            "p99_ms": v * 1.5,
            "mean_ms": v,
        }
        for k, v in p50.items()
    ]
    path = tmp_path / name
    path.write_text(json.dumps({"schema_version": 1, "environment": {"cpu": cpu}, "results": results}))
    return path


def test_compare_flags_regressions_beyond_threshold(tmp_path: Path):
    from edgeptm.benchmarking.compare import compare, read_report

    old = read_report(_report(tmp_path, "old.json", {"int8": 8.0, "fp32": 15.0, "gone": 3.0}))
    new = read_report(_report(tmp_path, "new.json", {"int8": 9.0, "fp32": 12.0, "added": 1.0}, cpu="cpu B"))
    result = compare(old, new, threshold=0.10)
    status = {r["variant"]: r["status"] for r in result["rows"]}
    assert status == {"int8": "REGRESSION", "fp32": "faster", "gone": "only in old", "added": "only in new"}
    assert [r["variant"] for r in result["regressions"]] == ["int8"]
    assert compare(old, new, threshold=0.2)["regressions"] == []
    assert compare(old, new, threshold=0.2, metric="p99_ms")["metric"] == "p99_ms"
    assert "different CPUs" in result["notes"][0]


def test_compare_cli_exit_codes(tmp_path: Path):
    from click.testing import CliRunner

    from edgeptm.cli import cli

    old = _report(tmp_path, "old.json", {"int8": 8.0})
    slow = _report(tmp_path, "slow.json", {"int8": 9.0})
    ok = CliRunner().invoke(cli, ["bench", "compare", str(old), str(old)])
    assert ok.exit_code == 0 and "same" in ok.output
    bad = CliRunner().invoke(cli, ["bench", "compare", str(old), str(slow), "--threshold", "0.05"])
    assert bad.exit_code == 1 and "1 regression(s) beyond 5% in p50_ms: int8 (1.12x)" in bad.stderr
    assert CliRunner().invoke(cli, ["bench", "compare", str(old), str(slow), "--threshold", "0.2"]).exit_code == 0
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    res = CliRunner().invoke(cli, ["bench", "compare", str(junk), str(old)])
    assert res.exit_code == 1 and "not an edgeptm bench report" in res.stderr


def test_bench_from_a_script_without_main_guard(tiny_onnx, tmp_path: Path):
    """Workers are plain subprocesses: a user's script is not re-imported in them."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(
        "import edgeptm\n"
        f"report = edgeptm.bench([{str(tiny_onnx.path)!r}], edgeptm.BenchOptions(iterations=3, warmup=0, rounds=1))\n"
        "print('p50', report['results'][0]['p50_ms'])\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.count("p50 ") == 1  # printed once: the script ran once


def test_peak_rss_is_the_workers_own_not_the_parents(tiny_onnx):
    """ru_maxrss survives fork + exec on Linux; the worker must report its own address space."""
    import numpy as np

    from edgeptm.benchmarking.worker import peak_rss_mb

    ballast = np.ones(60_000_000)  # ~480 MB touched in this, the parent, process
    report = bench([tiny_onnx.path], BenchOptions(iterations=5, warmup=1, rounds=1))
    assert report["results"][0]["peak_rss_mb"] < peak_rss_mb() - 400
    del ballast


def test_sweep_reports_every_combination_and_what_cannot_run(tiny_checkpoint, tiny_onnx):
    options = BenchOptions(
        batch_sizes=[1, 2], seq_lens=[16, 200], thread_counts=[1, 2], providers=["cpu", "cuda"], iterations=4
    )
    options.warmup, options.rounds = 1, 1
    report = bench([tiny_checkpoint.path, tiny_onnx.path], options)
    rows = report["results"]
    onnx = [r for r in rows if r["kind"] == "onnx"]
    torch_rows = [r for r in rows if r["kind"] == "checkpoint"]
    assert len(onnx) == 2 * 2 * 2 * 2 and len(torch_rows) == 2 * 2 * 2  # no provider axis for PyTorch
    ok = [r for r in onnx if r["status"] == "ok"]
    assert {(r["batch_size"], r["threads"]) for r in ok} == {(1, 1), (2, 1), (1, 2), (2, 2)}
    assert all(r["provider"] == "cpu" and r["seq_len"] == 16 for r in ok)
    missing = [r for r in onnx if r["provider"] == "cuda"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert all(r["status"] == "unrunnable" and "no CUDAExecutionProvider" in r["reason"] for r in missing)
    too_long = [r for r in rows if r["seq_len"] == 200 and r.get("provider") != "cuda"]
    assert too_long and all(r["status"] == "unrunnable" and r["reason"] for r in too_long)  # 128 positions
    for r in ok:
        assert r["end_to_end"]["p50_ms"] > 0 and r["end_to_end"]["timed"].startswith("end to end")
        assert 0 < len(r["samples_ms"]) <= r["iterations"]
    from edgeptm.cli.bench import format_report

    text = format_report(report)
    assert "unrunnable: " in text
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "no CUDAExecutionProvider" in text
    json.dumps(report)


def test_offline_scenario_searches_the_batch_size(tiny_onnx):
    report = bench(
        [tiny_onnx.path],
        BenchOptions(scenario="offline", max_batch=8, iterations=6, warmup=1, rounds=2, seq_len=16, threads=1),
    )
    r = report["results"][0]
    tried = [f["batch_size"] for f in r["search"]]
    assert tried[0] == 1 and tried == sorted(tried) and max(tried) <= 8
    assert r["batch_size"] in tried and r["throughput_per_s"] > 0 and r["scenario"] == "offline"
    assert "offline: throughput measured" in report["method"]
    with pytest.raises(UsageError, match="searches the batch size itself"):
        bench([tiny_onnx.path], BenchOptions(scenario="offline", batch_sizes=[1, 4]))


def test_a_fixed_image_size_is_reported_not_run(tmp_path: Path):
    from edgeptm.artifacts import Artifact
    from edgeptm.benchmarking import _static_shape_reason

    manifest = {
        "kind": "onnx",
        "preprocessing": {"crop": 96},
        "io": {"inputs": [{"name": "pixel_values", "shape": ["batch", 3, 96, 96]}]},
    }
    onnx = Artifact(tmp_path, manifest)
    assert _static_shape_reason(onnx, {"image_size": 96}) is None
    assert "fixed at 96x96" in _static_shape_reason(onnx, {"image_size": 224})
    checkpoint = Artifact(tmp_path, {**manifest, "kind": "checkpoint"})
    assert _static_shape_reason(checkpoint, {"image_size": 224}) is None  # PyTorch takes any size


def test_cli_sweep_writes_every_report_form(tiny_onnx, tmp_path: Path):
    from click.testing import CliRunner

    from edgeptm.cli import cli

    stem = tmp_path / "reports" / "sweep"
    args = ["bench", str(tiny_onnx.path), "--batch-size", "1,2", "--seq-len", "16", "--threads", "1"]
    result = CliRunner().invoke(
        cli, args + ["--iterations", "4", "--warmup", "0", "--rounds", "1", "--report", str(stem)]
    )
    assert result.exit_code == 0, result.output
    for suffix in (".json", ".csv", ".md", ".html"):
        assert (stem.parent / f"sweep{suffix}").is_file(), suffix
    report = json.loads(stem.with_suffix(".json").read_text())
    assert [r["batch_size"] for r in report["results"]] == [1, 2]
    bad = CliRunner().invoke(cli, ["bench", str(tiny_onnx.path), "--batch-size", "1,x"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
