"""Every target round-trips: the same labels from `predict` on the checkpoint, its ONNX export, the
OpenVINO IR and the ExecuTorch program, for a fixed set of inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeptm.cli import cli
from edgeptm.compile import CompileOptions, compile
from edgeptm.exporter import ExportOptions, export
from edgeptm.finetuning import finetune

TEXTS = [
    "a warm, funny and beautifully acted film",
    "a dull, lifeless and far too long film",
    "the plot goes nowhere",
    "one of the best films of the year",
]


def _labels(artifact: Path, inputs: list[str]) -> list[str]:
    result = CliRunner().invoke(cli, ["predict", str(artifact), *inputs, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    return [row["predictions"][0]["label"] for row in rows]


@pytest.mark.slow
def test_image_model_gives_the_same_labels_on_every_target(tmp_path: Path) -> None:
    from test_vision import _image_options, write_colour_images

    data = write_colour_images(tmp_path / "data", per_class=8, corrupt=False)
    ckpt = finetune(_image_options(data, "torchvision:resnet18", epochs=2), tmp_path / "ckpt")
    onnx = export(ckpt, tmp_path / "onnx", ExportOptions(optimize=False))
    openvino = compile(onnx, tmp_path / "openvino", CompileOptions(target="openvino"))
    executorch = compile(ckpt, tmp_path / "executorch", CompileOptions(target="executorch"))
    images = sorted(str(p) for p in data.rglob("*.*"))[::3]
    expected = _labels(ckpt.path, images)
    for artifact in (onnx, openvino, executorch):
        assert _labels(artifact.path, images) == expected, artifact.manifest.get("compile", {}).get("target", "onnx")


def test_text_model_gives_the_same_labels_on_every_target(tiny_checkpoint, tmp_path: Path) -> None:
    onnx = export(tiny_checkpoint, tmp_path / "onnx", ExportOptions(optimize=False))
    targets = [onnx, compile(onnx, tmp_path / "openvino", CompileOptions(target="openvino"))]
    expected = _labels(tiny_checkpoint.path, TEXTS)
    for artifact in targets:
        assert _labels(artifact.path, TEXTS) == expected
