"""ExecuTorch (XNNPACK) for real: .pte programs from checkpoints, FP32 and INT8, validated against
eager PyTorch, served by load()/predict/bench, refusing shapes and requests they cannot take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm.cli import cli
from edgeptm.compile import CompileOptions, compile
from edgeptm.errors import BackendError, UsageError

pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install executorch)")


def test_symmetric_same_padding_folds_into_the_convolution_and_asymmetric_stays() -> None:
    """TF-style "same" padding: a stride-1 pad is symmetric (folded), a stride-2 pad is not."""
    import torch

    from edgeptm.targets.executorch.build import fold_symmetric_pads

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.ZeroPad2d(1),
        torch.nn.Conv2d(3, 4, 3),  # symmetric
        torch.nn.ZeroPad2d((0, 1, 0, 1)),
        torch.nn.Conv2d(4, 4, 3, stride=2),  # asymmetric
        torch.nn.ZeroPad2d(2),
        torch.nn.Conv2d(4, 4, 5, groups=4),  # symmetric, depthwise
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    graph = torch.export.export(model, (x,)).module()
    assert fold_symmetric_pads(graph) == 2
    pads = [n for n in graph.graph.nodes if n.op == "call_function" and "pad" in str(n.target)]
    assert [list(n.args[1]) for n in pads] == [[0, 1, 0, 1]]
    torch.testing.assert_close(graph(x), model(x), rtol=0, atol=1e-6)
    assert fold_symmetric_pads(graph) == 0  # nothing left to fold


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_vision import write_colour_images

    return write_colour_images(tmp_path_factory.mktemp("et-images") / "colours", per_class=8, corrupt=False)


@pytest.fixture(scope="module")
def image_ckpt(image_data: Path, tmp_path_factory: pytest.TempPathFactory):
    from test_vision import _image_options

    from edgeptm.finetuning import finetune

    out = tmp_path_factory.mktemp("et-cnn") / "ckpt"
    return finetune(_image_options(image_data, "timm:test_resnet", epochs=3, lr=3e-3), out)


@pytest.fixture(scope="module")
def fp32_dynamic(image_ckpt, tmp_path_factory: pytest.TempPathFactory):
    """FP32 with a batch range asked for: dynamic batch 1..4."""
    out = tmp_path_factory.mktemp("et-fp32") / "engine"
    return compile(image_ckpt, out, CompileOptions(target="executorch", max_batch=4))


@pytest.fixture(scope="module")
def int8_static(image_ckpt, tmp_path_factory: pytest.TempPathFactory):
    """INT8 with nothing asked for: static at batch 1, calibrated on the checkpoint's sample."""
    out = tmp_path_factory.mktemp("et-int8") / "engine"
    return compile(image_ckpt, out, CompileOptions(target="executorch", precision="int8", calib_samples=16))


def _images(data: Path) -> list[str]:
    return [
        str(data / colour / f"00{i}.{'png' if i % 2 else 'jpg'}") for colour in ("red", "green", "blue") for i in (1, 2)
    ]


def test_fp32_program_matches_eager_with_a_dynamic_batch(fp32_dynamic, image_ckpt, image_data: Path) -> None:
    m = fp32_dynamic.manifest
    info = m["compile"]
    assert fp32_dynamic.kind == "engine" and info["target"] == "executorch" and m["precision"] == "fp32"
    assert info["executorch"] and info["torch"] and info["compile_seconds"] > 0
    assert info["static_shapes"] is False and info["dynamic_shapes"] == {"pixel_values": {"batch": [1, 4]}}
    assert info["shapes"]["pixel_values"] == {"min": [1, 3, 32, 32], "max": [4, 3, 32, 32]}
    assert info["delegate"]["subgraphs"] >= 1 and info["delegate"]["delegated_nodes"] > 50
    assert m["validation"]["max_abs_diff"] < 1e-3 and m["metrics"]["accuracy"] == image_ckpt.metrics["accuracy"]
    images = _images(image_data)
    with edgeptm.load(image_ckpt.path) as eager, edgeptm.load(fp32_dynamic.path) as program:
        assert program.backend.name == "executorch-xnnpack-fp32" and program.batch_size == 4
        np.testing.assert_allclose(program.logits(images), eager.logits(images), atol=1e-4)  # 6 = 4 + 2
        with pytest.raises(BackendError, match=r"shape 5x3x32x32; this ExecuTorch program takes 1\.\.4x3x32x32"):
            program.backend.run(program.encode(images[:5]))
        # Fewer elements than the bound: the runtime itself would resize the input and run it.
        with pytest.raises(BackendError, match="shape 1x3x40x40"):
            program.backend.run({"pixel_values": np.zeros((1, 3, 40, 40), np.float32)})


def test_int8_program_keeps_the_labels_and_records_the_accuracy_delta(int8_static, image_ckpt) -> None:
    m = int8_static.manifest
    info = m["compile"]
    assert m["precision"] == "int8" and info["precision"] == "int8" and info["static_shapes"] is True
    assert info["shapes"]["pixel_values"] == {"min": [1, 3, 32, 32], "max": [1, 3, 32, 32]}
    assert info["quantization"]["activations"] == "static" and "16 inputs" in info["quantization"]["calibration"]
    # XNNPACK runs the network but for the avg_pool2d of timm's test_resnet downsampling, which it has no
    # INT8 kernel for: those run on ExecuTorch's portable kernels, and the record names them.
    assert info["delegate"]["delegated_nodes"] > 50
    assert set(info["delegate"]["non_delegated_ops"]) <= {"aten.avg_pool2d.default"}
    assert m["validation"]["top1_agreement"] >= 0.9 and m["validation"]["gate"]["min_top1_agreement"] == 0.9
    metrics = m["metrics"]
    assert metrics["parent_accuracy"] == image_ckpt.metrics["accuracy"]
    assert metrics["accuracy_delta_points"] == pytest.approx(100 * (metrics["accuracy"] - metrics["parent_accuracy"]))


def test_static_program_refuses_another_shape_with_the_rebuild_command(int8_static, image_data: Path) -> None:
    with edgeptm.load(int8_static.path) as program:
        assert program.batch_size == 1 and len(program.predict(_images(image_data))) == 6  # split to batch 1
        with pytest.raises(
            BackendError,
            match=r"shape 2x3x32x32; this ExecuTorch program is static at 1x3x32x32.*"
            r"--max-batch N.*edgeptm compile .* --target executorch --precision int8",
        ):
            program.backend.run(program.encode(_images(image_data)[:2]))


def test_every_runtime_predicts_the_same_labels(image_ckpt, fp32_dynamic, int8_static, image_data: Path, tmp_path):
    from edgeptm.exporter import export

    onnx = export(image_ckpt, tmp_path / "onnx")
    images = _images(image_data)
    labels = []
    for artifact in (image_ckpt.path, onnx.path, fp32_dynamic.path, int8_static.path):
        result = CliRunner().invoke(cli, ["predict", str(artifact), *images, "--json"])
        assert result.exit_code == 0, result.output
        labels.append([row["predictions"][0]["label"] for row in json.loads(result.output)])
    assert all(row == labels[0] for row in labels[1:]), labels


def test_bench_runs_the_program_in_its_own_process(int8_static) -> None:
    report = edgeptm.bench([int8_static.path], edgeptm.BenchOptions(iterations=5, warmup=1, rounds=1, threads=1))
    row = report["results"][0]
    assert row["backend"] == "executorch-xnnpack-int8" and row["p50_ms"] > 0 and row["threads"] == 1


def test_requests_it_cannot_build_are_refused_before_any_work_and_calib_supplies_data(
    image_ckpt, image_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--precision bf16: ExecuTorch's XNNPACK target builds fp32, int8"):
        compile(image_ckpt, tmp_path / "a", CompileOptions(target="executorch", precision="bf16"))
    with pytest.raises(UsageError, match="--device cuda: the ExecuTorch XNNPACK target runs on CPUs only"):
        compile(image_ckpt, tmp_path / "b", CompileOptions(target="executorch", device="cuda"))
    bare = tmp_path / "no-calib"  # an as-is model: no calibration sample to quantize with
    shutil.copytree(image_ckpt.path, bare)
    manifest = json.loads((bare / "manifest.json").read_text())
    (bare / manifest["files"].pop("calib_data")["path"]).unlink()
    (bare / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(
        cli, ["compile", str(bare), "--target", "executorch", "--precision", "int8", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 1 and "carries none" in result.output and "--precision fp32" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    calibrated = CliRunner().invoke(
        cli,
        ["compile", str(bare), "--target", "executorch", "--precision", "int8", "--calib", str(image_data)]
        + ["--calib-samples", "8", "--out", str(tmp_path / "c")],
    )
    assert calibrated.exit_code == 0, calibrated.output
    assert "ExecuTorch" in calibrated.output and "XNNPACK, int8" in calibrated.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["compile"]["quantization"]["calibration"].startswith(f"--calib {image_data} (8 inputs)")


def test_text_checkpoint_lowers_with_int8_linear_layers(tiny_checkpoint, tmp_path: Path) -> None:
    """BERT-style encoders lower too (LayerNorm and the mask arithmetic stay on ExecuTorch's portable
    kernels); INT8 quantizes the Linear layers with per-call activation scales."""
    engine = compile(tiny_checkpoint, tmp_path / "text", CompileOptions(target="executorch", precision="int8"))
    info = engine.manifest["compile"]
    longest = tiny_checkpoint.preprocessing["max_length"]
    assert info["shapes"]["input_ids"] == {"min": [1, longest], "max": [1, longest]}  # static at opt = max length
    assert info["quantization"]["activations"] == "dynamic" and info["delegate"]["subgraphs"] >= 1
    assert engine.manifest["validation"]["top1_agreement"] >= 0.9
    texts = ["a warm and funny film", "a dull, lifeless and far too long film", "fine"]
    with edgeptm.load(tiny_checkpoint.path) as eager, edgeptm.load(engine.path) as program:
        assert program.backend.sequence_bounds == (longest, longest)
        assert [p.label for p in program.predict(texts)] == [p.label for p in eager.predict(texts)]
