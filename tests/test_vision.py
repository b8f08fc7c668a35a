"""Image models through every stage: real architectures (random init where weights cannot be
fetched here), real images written by the test, ONNX Runtime for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import edgeptm
from edgeptm.cli import cli
from edgeptm.errors import ModelError
from edgeptm.exporter import ExportOptions, export
from edgeptm.finetuning import FinetuneOptions, finetune
from edgeptm.quantization import QuantizeOptions, quantize

COLOURS = ("red", "green", "blue")


def write_colour_images(root: Path, per_class: int, corrupt: bool = True) -> Path:
    """Three classes told apart by their dominant colour channel, in varied sizes and modes."""
    rng = np.random.default_rng(0)
    for channel, name in enumerate(COLOURS):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (36 + i % 5, 44, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            image = Image.fromarray(pixels)
            suffix = ".png" if i % 2 else ".jpg"
            image.save(folder / f"{i:03d}{suffix}")
    if corrupt:
        (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_images(tmp_path_factory.mktemp("images") / "colours", per_class=24)


def _image_options(data: Path, model: str, **overrides) -> FinetuneOptions:
    settings = dict(
        model=model,
        train=str(data),
        pretrained=False,
        image_size=32,
        epochs=3,
        batch_size=8,
        lr=1e-3,
        val_fraction=0.25,
        progress=False,
        threads=2,
    )
    settings.update(overrides)
    return FinetuneOptions(**settings)


@pytest.fixture(scope="module")
def resnet_checkpoint(colour_images: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("resnet") / "ckpt"
    return finetune(_image_options(colour_images, "torchvision:resnet18"), out)


def test_image_checkpoint_records_preprocessing_and_skips_corrupt_images(resnet_checkpoint, caplog) -> None:
    m = resnet_checkpoint.manifest
    assert m["task"] == "image-classification" and m["labels"] == sorted(COLOURS)
    assert m["preprocessing"]["crop"] == 32 and m["preprocessing"]["resize"] == 37
    assert m["io"]["inputs"][0] == {"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, 32, 32]}
    assert m["model"]["pretrained_weights"].startswith("random init")
    paths = [json.loads(line)["path"] for line in resnet_checkpoint.file("val_data").read_text().splitlines()]
    train_n = m["training"]["train_samples"]
    assert train_n + len(paths) == 72  # the 73rd file, broken.png, was skipped
    assert not any(p.endswith("broken.png") for p in paths)
    assert resnet_checkpoint.has_file("calib_data")


def test_resnet_learns_the_colours(resnet_checkpoint) -> None:
    assert resnet_checkpoint.metrics["accuracy"] >= 0.8


def test_export_static_int8_fp16_predict_and_bench(resnet_checkpoint, colour_images: Path, tmp_path: Path) -> None:
    onnx = export(resnet_checkpoint, tmp_path / "onnx")
    assert onnx.manifest["validation"]["max_abs_diff"] < 1e-3
    assert onnx.metrics["accuracy"] == pytest.approx(resnet_checkpoint.metrics["accuracy"])

    for method in ("minmax", "entropy", "percentile"):
        int8 = quantize(onnx, tmp_path / f"int8-{method}", QuantizeOptions(mode="static-int8", calib_method=method))
        q = int8.manifest["quantization"]
        assert int8.manifest["precision"] == "int8-static-qdq" and q["calibration"]["method"] == method
        assert q["qdq_nodes"]["QuantizeLinear"] > 10 and q["ops_with_int8_weights"]["Conv"] >= 17
        assert "accuracy_delta_points" in int8.metrics
    assert int8.size_bytes(["model"]) < 0.4 * onnx.size_bytes(["model"])

    fp16 = quantize(onnx, tmp_path / "fp16", QuantizeOptions(mode="fp16"))
    assert fp16.manifest["io"]["inputs"][0]["dtype"] == "float32"
    assert fp16.manifest["fidelity"]["top1_agreement"] == 1.0 and fp16.manifest["fidelity"]["min_cosine"] > 0.999
    half_io = quantize(onnx, tmp_path / "fp16-io", QuantizeOptions(mode="fp16", fp16_io=True))
    assert half_io.manifest["io"]["inputs"][0]["dtype"] == "float16"
    with edgeptm.load(half_io.path) as predictor:  # the preprocessor feeds float16 to this graph
        assert predictor.encode([str(colour_images / "red" / "001.png")])["pixel_values"].dtype == np.float16

    image = str(colour_images / "blue" / "003.png")
    for artifact in (resnet_checkpoint, onnx, int8, fp16, half_io):
        with edgeptm.load(artifact.path) as predictor:
            ranked = predictor.top_k([image], 3)[0]
        assert ranked[0].label == "blue" and len(ranked) == 3
        assert sum(p.score for p in ranked) == pytest.approx(1.0, abs=1e-3)

    report = edgeptm.bench([onnx.path, int8.path], edgeptm.BenchOptions(iterations=20, warmup=2, rounds=2))
    assert [r["precision"] for r in report["results"]] == ["fp32", "int8-static-qdq"]
    assert [r["seq_len"] for r in report["results"]] == [None, None]  # images: no sequence axis
    assert all(r["p50_ms"] > 0 and r["accuracy"] is not None for r in report["results"])


def test_serving_matches_evaluation(resnet_checkpoint, colour_images: Path, tmp_path: Path) -> None:
    """What `predict` computes for a file is what evaluation computed for it: the training recipe's
    evaluation logits and the Predictor's agree, for the checkpoint and its ONNX export, and a path,
    a PIL image and an RGB array of the same picture give the same feed."""
    from edgeptm.finetuning import FinetuneOptions
    from edgeptm.models import resolve_model
    from edgeptm.tasks import get_task

    task = get_task("image-classification")
    val = task.val_data(resnet_checkpoint)
    opts = FinetuneOptions(model="torchvision:resnet18", image_size=32, pretrained=False)
    spec = resolve_model(opts.model).with_options(pretrained=False, image_size=32)
    recipe = task.recipe(spec, opts, val, val, resnet_checkpoint.labels)
    recipe.model = task.torch_model(resnet_checkpoint)
    expected = recipe.eval_logits()

    onnx = export(resnet_checkpoint, tmp_path / "onnx")
    for artifact, atol in ((resnet_checkpoint, 1e-5), (onnx, 1e-3)):
        with edgeptm.load(artifact.path) as predictor:
            np.testing.assert_allclose(predictor.logits(val.paths), expected, atol=atol)

    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(onnx.path), *val.paths[:4], "--json"])
    assert result.exit_code == 0, result.output
    printed = [row["predictions"][0]["label"] for row in json.loads(result.output)]
    assert printed == [resnet_checkpoint.labels[i] for i in expected[:4].argmax(-1)]

    with edgeptm.load(onnx.path) as predictor:
        path = val.paths[0]
        with Image.open(path) as image:
            pil = image.copy()
        feeds = [predictor.encode([x])["pixel_values"] for x in (path, pil, np.asarray(pil.convert("RGB")))]
    np.testing.assert_array_equal(feeds[0], feeds[1])
    np.testing.assert_array_equal(feeds[0], feeds[2])


def test_strict_refuses_corrupt_image(colour_images: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["finetune", "--model", "torchvision:resnet18", "--no-pretrained", "--train", str(colour_images)]
    result = runner.invoke(cli, [*args, "--strict", "--image-size", "32", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "broken.png" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_offline_pretrained_weights_say_how_to_supply_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from edgeptm.models.vision import timm_spec, torchvision_spec

    from urllib.parse import urlparse

    import torchvision

    host = urlparse(torchvision.models.ResNet18_Weights.DEFAULT.url).hostname
    try:  # this test is about machines without a network (CI, these build machines)
        socket.create_connection((host, 443), timeout=2).close()
        pytest.skip("a network is reachable: pretrained weights would download")
    except OSError:
        pass
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # a cold cache, whatever this machine has
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    for spec in (torchvision_spec("resnet18"), timm_spec("resnet18")):
        with pytest.raises(ModelError, match="--weights FILE.*--no-pretrained"):
            spec.build(3)


def test_weights_file_is_checked_against_the_architecture(tmp_path: Path) -> None:
    import torch

    from edgeptm.models.vision import torchvision_spec

    donor = torchvision_spec("resnet18").with_options(pretrained=False).build(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(donor.state_dict(), path)
    # Right architecture, other class count: everything but the head is taken.
    model = torchvision_spec("resnet18").with_options(weights=str(path)).build(3)
    assert torch.equal(model.conv1.weight, donor.conv1.weight) and model.fc.out_features == 3
    # Wrong architecture: a clear error naming a tensor.
    with pytest.raises(ModelError, match="do not fit this architecture.*layer"):
        torchvision_spec("resnet34").with_options(weights=str(path)).build(3)


class _Payload:
    """Unpickling this runs code: it creates the marker file named in its argument."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_file_is_never_unpickled(tmp_path: Path) -> None:
    import torch

    from edgeptm.models.vision import torchvision_spec

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(str(marker))}, path)  # the normal zip format torch.load reads
    with pytest.raises(ModelError, match="not a loadable state dict"):
        torchvision_spec("resnet18").with_options(weights=str(path)).build(3)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: an unsafe load does run the payload
    assert marker.exists()


def test_unknown_image_models_are_clear_errors() -> None:
    from edgeptm.models import resolve_model

    with pytest.raises(ModelError, match="torchvision:resnet1000: not a torchvision classification model"):
        resolve_model("torchvision:resnet1000")
    with pytest.raises(ModelError, match="timm:no_such_net: unknown timm model"):
        resolve_model("timm:no_such_net")


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,size",
    [
        ("timm:resnet18", 32),
        # VGG's AdaptiveAvgPool2d(7) exports only when the feature map is a multiple of 7: 224 input.
        ("torchvision:vgg16", 224),
    ],
)
def test_other_architectures_through_every_stage(model: str, size: int, tmp_path: Path) -> None:
    data = write_colour_images(tmp_path / "data", per_class=6, corrupt=False)
    ckpt = finetune(_image_options(data, model, image_size=size, epochs=1, batch_size=6), tmp_path / "ckpt")
    onnx = export(ckpt, tmp_path / "onnx", ExportOptions())
    int8 = quantize(onnx, tmp_path / "int8", QuantizeOptions(mode="static-int8", calib_samples=8))
    assert int8.manifest["quantization"]["ops_with_int8_weights"].get("Conv", 0) >= 8
    report = edgeptm.bench([int8.path], edgeptm.BenchOptions(iterations=5, warmup=1, rounds=1))
    assert report["results"][0]["p50_ms"] > 0
    with edgeptm.load(int8.path) as predictor:
        assert predictor.predict([str(data / "green" / "001.png")])[0].label in COLOURS


@pytest.mark.slow
def test_efficientnet_lite0_pretrained_finetunes(colour_images: Path, tmp_path: Path) -> None:
    """The packaged ImageNet weights: a frozen backbone plus a new head separates the colours."""
    opts = _image_options(colour_images, "efficientnet-lite0", pretrained=True, freeze_backbone=True, image_size=64)
    ckpt = finetune(opts, tmp_path / "ckpt")
    assert ckpt.manifest["model"]["pretrained_weights"].startswith("efficientnet-lite0-")
    assert ckpt.manifest["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert ckpt.metrics["accuracy"] >= 0.8


def test_vgg_at_a_small_size_fails_to_export_with_advice(tmp_path: Path) -> None:
    """A real exporter limit (adaptive pooling to 7x7 from a 1x1 map) gets a one-line error that
    says what to do, and leaves nothing behind."""
    from edgeptm.errors import ExportError

    data = write_colour_images(tmp_path / "data", per_class=3, corrupt=False)
    opts = _image_options(data, "torchvision:vgg11", image_size=32, epochs=1, batch_size=9)
    ckpt = finetune(opts, tmp_path / "ckpt")
    with pytest.raises(ExportError, match="adaptive_avg_pool2d.*--image-size 224"):
        export(ckpt, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_artifact_whose_images_moved_still_exports_and_benches(colour_images: Path, tmp_path: Path) -> None:
    """An artifact records its validation images by path; on a machine without them, export and
    bench fall back to stand-in inputs (and say so) instead of failing."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(colour_images, data)
    (data / "red" / "broken.png").unlink()
    ckpt = finetune(_image_options(data, "torchvision:resnet18", epochs=1), tmp_path / "ckpt")
    shutil.rmtree(data)
    onnx = export(ckpt, tmp_path / "onnx")
    assert onnx.metrics.get("accuracy") is None and onnx.manifest["validation"]["samples"] == 64
    report = edgeptm.bench([onnx.path], edgeptm.BenchOptions(iterations=5, warmup=1, rounds=1))
    assert report["results"][0]["p50_ms"] > 0
    with pytest.raises(edgeptm.EdgeptmError, match="--calib"):  # calibration images are gone too
        quantize(onnx, tmp_path / "int8", QuantizeOptions(mode="static-int8"))


def test_fixed_size_architecture_fails_before_training_with_advice(colour_images: Path, tmp_path: Path) -> None:
    opts = _image_options(colour_images, "torchvision:vit_b_16", image_size=64)
    with pytest.raises(ModelError, match="does not run at 64x64.*--image-size"):
        finetune(opts, tmp_path / "ckpt")
