"""The fifth target, ONNX Runtime Mobile, for real: the tiny model's ONNX (FP32, dynamic INT8,
static Q/DQ, and a small CNN's static INT8) converted to the ORT format by onnxruntime's own
converter, with the operator/type config of a reduced build; loaded, predicted, benched and
verified like every engine; the requests it does not own refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm.artifacts import open_artifact
from edgeptm.cli import cli
from edgeptm.compile import CompileOptions, compile
from edgeptm.errors import UsageError
from edgeptm.quantization import QuantizeOptions, quantize

TEXTS = ["a warm and funny film", "a dull, lifeless and far too long film", "fine", "not good at all"]


@pytest.fixture(scope="module")
def dynamic(tiny_onnx, tmp_path_factory: pytest.TempPathFactory):
    return quantize(tiny_onnx, tmp_path_factory.mktemp("om") / "dyn", QuantizeOptions(mode="dynamic-int8"))


@pytest.fixture(scope="module")
def ort_engine(dynamic, tmp_path_factory: pytest.TempPathFactory):
    return compile(dynamic, tmp_path_factory.mktemp("om") / "ort", CompileOptions(target="ort-mobile"))


def test_dynamic_int8_converts_with_its_operator_config_and_agrees_with_onnxruntime(ort_engine, dynamic) -> None:
    m = ort_engine.manifest
    info = m["compile"]
    assert ort_engine.kind == "engine" and info["target"] == "ort-mobile" and info["platform"] == "arm"
    assert m["files"]["model"]["path"] == "model.ort" and m["precision"] == dynamic.manifest["precision"]
    ops = info["operator_config"]
    config = (ort_engine.path / ops["path"]).read_text()
    # The reduced build needs exactly these kernels; dynamic INT8 brings its activation quantizer.
    assert "DynamicQuantizeLinear" in [op for names in ops["by_domain"].values() for op in names]
    assert "/tmp" not in config and "model.ort" in config, "no staging path inside the artifact"
    assert ops["operators"] == sum(len(v) for v in ops["by_domain"].values()) > 3
    assert "{" in config, "type reduction lists the types each operator needs"
    assert "--include_ops_by_config" in info["reduced_build"]
    assert m["validation"]["top1_agreement"] == 1.0 and m["validation"]["min_cosine"] > 0.99
    assert m["metrics"]["accuracy"] == pytest.approx(dynamic.metrics["accuracy"], abs=0.02)
    with edgeptm.load(ort_engine.path) as engine, edgeptm.load(dynamic.path) as ort:
        assert engine.backend.name == "onnxruntime-mobile-arm"
        np.testing.assert_allclose(engine.logits(TEXTS), ort.logits(TEXTS), atol=0.05)
    # Data only: no native code, so it loads from elsewhere without 'edgeptm trust'.
    verified = CliRunner().invoke(cli, ["verify", str(ort_engine.path), "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["native_code"] == []


def test_static_qdq_for_amd64_without_type_reduction_and_the_cli_summary(tiny_onnx, tmp_path: Path) -> None:
    qdq = quantize(tiny_onnx, tmp_path / "qdq", QuantizeOptions(mode="static-int8", calib_samples=16))
    out = tmp_path / "ort"
    result = CliRunner().invoke(
        cli,
        [
            "compile",
            str(qdq.path),
            "--target",
            "ort-mobile",
            "--platform",
            "amd64",
            "--no-type-reduction",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ORT format for amd64" in result.output and "vs ONNX Runtime (the ONNX)" in result.output
    engine = open_artifact(out)
    info = engine.manifest["compile"]
    assert info["platform"] == "amd64" and info["type_reduction"] is False
    assert "{" not in (out / info["operator_config"]["path"]).read_text()
    assert engine.manifest["validation"]["top1_agreement"] >= 0.95


def test_bench_runs_the_ort_file_in_its_own_process(ort_engine, dynamic) -> None:
    report = edgeptm.bench(
        [dynamic.path, ort_engine.path], edgeptm.BenchOptions(iterations=5, warmup=1, rounds=1, threads=1)
    )
    rows = {r["backend"]: r for r in report["results"]}
    assert rows["onnxruntime-mobile-arm"]["p50_ms"] > 0 and rows["onnxruntime-cpu"]["p50_ms"] > 0


def test_requests_the_target_does_not_own_are_refused_in_one_line(dynamic, tiny_checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "x"
    cases = [
        (
            dynamic,
            CompileOptions(target="ort-mobile", precision="int8"),
            "--precision is for --target .* not ort-mobile",
        ),
        (
            dynamic,
            CompileOptions(target="ort-mobile", workspace_mb=64),
            "--workspace-mb is for --target tensorrt, not ort-mobile",
        ),
        (dynamic, CompileOptions(target="ort-mobile", platform="riscv"), "--platform 'riscv' is not one of arm, amd64"),
        (
            dynamic,
            CompileOptions(target="openvino", platform="arm"),
            "--platform is for --target ort-mobile, not openvino",
        ),
        (tiny_checkpoint, CompileOptions(target="ort-mobile"), "takes an ONNX artifact"),
    ]
    for source, options, message in cases:
        with pytest.raises(UsageError, match=message):
            compile(source, out, options)
        assert not out.exists()
    result = CliRunner().invoke(
        cli, ["compile", str(dynamic.path), "--target", "aoti", "--platform", "arm", "--out", str(out)]
    )
    assert result.exit_code != 0 and "--platform is for --target ort-mobile, not aoti" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
