"""edgeptm build: every stage of a device profile in one command, one report, honest about what
this machine cannot do."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeptm.build import BuildOptions, build, markdown
from edgeptm.cli import cli
from edgeptm.errors import UsageError

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_cpu_profile_builds_quantizes_and_benches(tiny_checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "x86"
    report = build(tiny_checkpoint, out, BuildOptions(profile="cpu-x86-avx512", duration=0.2))
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["export"]["status"] == "done" and (out / "onnx" / "manifest.json").is_file()
    assert stages["quantize (dynamic-int8)"]["status"] == "done" and (out / "dynamic-int8" / "manifest.json").is_file()
    assert stages["compile (none)"]["status"] == "skipped" and "ONNX Runtime runs" in stages["compile (none)"]["detail"]
    assert stages["bench"]["status"] == "done"
    timed = {r["artifact"] for r in report["bench"]["results"]}
    assert {v["artifact"] for v in report["variants"]} == timed and len(timed) == 3
    saved = json.loads((out / "build-report.json").read_text())
    assert saved["profile"]["name"] == "cpu-x86-avx512" and saved["stages"] == report["stages"]
    text = (out / "build-report.md").read_text()
    assert "| quantize (dynamic-int8) | done |" in text and "ONNX Runtime FP32" in text


def test_openvino_profile_compiles_an_int8_ir_and_benches_it_beside_onnx_runtime(tiny_checkpoint, tmp_path) -> None:
    out, texts = tmp_path / "ov", tmp_path / "texts.csv"
    texts.write_text("text\n" + "".join(f"a line about film number {i}\n" for i in range(12)))
    report = build(tiny_checkpoint, out, BuildOptions(profile="cpu-x86-openvino", duration=0.2, calib=str(texts)))
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["status"] for s in report["stages"]] == ["done"] * 4
    engine = stages["compile (openvino)"]["record"]
    assert engine["compile"]["precision"] == "int8 (NNCF)" and engine["compile"]["static_shapes"]
    assert engine["compile"]["calibration"]["source"].startswith(f"--calib {texts} (12 inputs)")  # build's --calib
    longest = tiny_checkpoint.preprocessing["max_length"]  # the profile's 128 tokens, cut to the model's length
    assert engine["compile"]["shapes"]["input_ids"]["opt"] == [1, min(128, longest)]
    assert engine["metrics"]["max_accuracy_drop"] == 1.0 and engine["metrics"]["accuracy"] is not None
    # OpenVINO quantizes the plain FP32 export itself (NNCF), not ONNX Runtime's INT8
    assert json.loads((out / "engine" / "manifest.json").read_text())["parents"][0]["path"] == str(out / "onnx")
    backends = {r["artifact"]: r["backend"] for r in report["bench"]["results"]}
    assert backends[str(out / "engine")].startswith("openvino") and len(backends) == 4
    # timed at the IR's sequence: the profile's 128 is cut to the model's length for every variant
    assert {r["seq_len"] for r in report["bench"]["results"]} == {min(128, longest)}
    assert f"sequence {min(128, longest)}" in (out / "build-report.md").read_text()


def test_max_length_reaches_the_export_and_what_is_built_from_it(tiny_checkpoint, tmp_path) -> None:
    """Fine-tuned at 32 tokens, built to serve 64: the OpenVINO IR is static at the profile's 128 cut
    to 64 (not 32), and every variant is timed at 64. What cannot serve it is refused before any work."""
    out = tmp_path / "ov64"
    report = build(tiny_checkpoint, out, BuildOptions(profile="cpu-x86-openvino", duration=0.2, max_length=64))
    assert tiny_checkpoint.preprocessing["max_length"] == 32
    assert json.loads((out / "onnx" / "manifest.json").read_text())["preprocessing"]["max_length"] == 64
    engine = {s["name"]: s for s in report["stages"]}["compile (openvino)"]["record"]
    assert engine["compile"]["shapes"]["input_ids"]["opt"] == [1, 64]
    assert {r["seq_len"] for r in report["bench"]["results"]} == {64}
    assert {r["status"] for r in report["bench"]["results"]} == {"ok"}
    assert "(fine-tuned at 32 tokens; built to serve 64)" in (out / "build-report.md").read_text()
    # shorter than fine-tuned: the IR and the bench follow the export, not the checkpoint
    short = build(
        tiny_checkpoint, tmp_path / "ov16", BuildOptions(profile="cpu-x86-openvino", duration=0.1, max_length=16)
    )
    assert {(r["seq_len"], r["status"]) for r in short["bench"]["results"]} == {(16, "ok")}
    et = tmp_path / "et.yaml"
    et.write_text("name: et\ncompile:\n  target: executorch\n")
    with pytest.raises(UsageError, match="compiles executorch from the checkpoint, which serves 32 tokens"):
        build(tiny_checkpoint, tmp_path / "a", BuildOptions(profile=str(et), max_length=64))
    with pytest.raises(UsageError, match=r"--max-length 129 exceeds what its encoder takes \(128 tokens\)"):
        build(tiny_checkpoint, tmp_path / "b", BuildOptions(profile="cpu-x86-avx512", max_length=129))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here: the skipped-stage path cannot be seen")
def test_gpu_profile_does_what_it_can_and_says_what_it_could_not(tiny_checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "orin"
    result = CliRunner().invoke(
        cli, ["build", str(tiny_checkpoint.path), "--profile", "jetson-orin-nano", "--out", str(out), "--no-bench"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "build-report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    int8 = out / "static-int8"
    assert stages["quantize (static-int8)"]["status"] == "done"
    assert json.loads((int8 / "manifest.json").read_text())["quantization"]["activation_type"] == "int8"
    compile_stage = stages["compile (tensorrt)"]
    assert compile_stage["status"] == "skipped" and not (out / "engine").exists()
    assert "edgeptm[tensorrt]" in compile_stage["detail"]
    assert f"edgeptm compile {int8} --profile jetson-orin-nano --out {out / 'engine'}" in compile_stage["detail"]
    assert "| compile (tensorrt) | skipped |" in result.output


def test_bad_requests_fail_before_any_work(tiny_checkpoint, tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="build takes a checkpoint artifact"):
        build(tiny_onnx, tmp_path / "a", BuildOptions(profile="cpu-arm64"))
    assert not (tmp_path / "a").exists()
    with pytest.raises(UsageError, match="build needs --profile"):
        build(tiny_checkpoint, tmp_path / "b", BuildOptions())
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["build", str(tiny_checkpoint.path), "--profile", "cpu-arm64", "--out", str(busy)])
    assert result.exit_code == 1 and "not empty" in result.output and (busy / "keep.txt").read_text() == "mine"
    result = CliRunner().invoke(cli, ["build", str(tiny_checkpoint.path), "--profile", "jetson-nope", "--out", "x"])
    assert result.exit_code == 1 and "unknown profile 'jetson-nope'" in result.output


def test_report_says_why_a_variant_was_not_timed() -> None:
    report = {
        "profile": {"name": "p", "description": "d"},
        "checkpoint": "ckpt",
        "stages": [],
        "variants": [
            {"variant": "ONNX Runtime FP32", "artifact": "a", "precision": "fp32", "size_mb": 1.0},
            {"variant": "openvino engine", "artifact": "b", "precision": "int8", "size_mb": 0.3},
        ],
        "bench": {
            "results": [
                {"artifact": "a", "status": "ok", "p50_ms": 1.0, "p90_ms": 1.5, "batch_size": 1, "seq_len": 32},
                {"artifact": "b", "status": "unrunnable", "reason": "BackendError: shape 1x128, IR is 1x32 | x"},
            ]
        },
        "environment": {"cpu": "c", "cpu_count": 2},
    }
    text = markdown(report)
    assert "| openvino engine | int8 | 0.3 |  |  | not timed: BackendError: shape 1x128, IR is 1x32 \\| x |  |" in text
    assert "| ONNX Runtime FP32 | fp32 | 1.0 |  |  | 1.000 | 1.500 |" in text
    assert "Timed at batch 1, sequence 32, the runtime's default threads" in text
