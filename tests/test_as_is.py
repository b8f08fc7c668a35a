"""Registered models used as they were pretrained: named where an artifact is expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import edgeptm
from edgeptm.cli import cli
from edgeptm.exporter import export
from edgeptm.quantization import QuantizeOptions, quantize


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPTM_CACHE", str(tmp_path_factory.getbasetemp() / "as-is-cache"))


def test_image_model_as_is_gives_imagenet_names(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(photo)
    result = CliRunner().invoke(cli, ["predict", "efficientnet-lite0", str(photo), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)[0]
    assert len(row["predictions"]) == 5  # top-5 by default for ImageNet's 1000 classes
    with edgeptm.load("efficientnet-lite0") as predictor:
        assert len(predictor.labels) == 1000 and predictor.labels[0] == "tench"
        assert predictor.artifact.manifest["model"]["as_is"] is True
        ranked = predictor.top_k([str(photo)], 5)[0]
        # The weights were trained on (x - 127.5) / 127.5: black is -1, white is +1.
        black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
        feed = predictor.encode([black, white])["pixel_values"]
    assert [p["label"] for p in row["predictions"]] == [p.label for p in ranked]
    np.testing.assert_allclose(feed[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(feed[1], 1.0, atol=1e-6)

    onnx = export("efficientnet-lite0", tmp_path / "onnx")
    assert onnx.manifest["validation"]["max_abs_diff"] < 1e-3 and onnx.metrics.get("accuracy") is None
    # No training data rides along with an as-is model: calibration must be given.
    with pytest.raises(edgeptm.EdgeptmError, match="--calib"):
        quantize(onnx, tmp_path / "int8", QuantizeOptions(mode="static-int8"))
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    int8 = quantize(onnx, tmp_path / "int8", QuantizeOptions(mode="static-int8", calib=str(calib)))
    assert int8.manifest["fidelity"]["samples"] == 8 and int8.manifest["fidelity"]["mean_cosine"] > 0.9


def test_minilm_as_is_is_a_sentence_embedder_whose_exports_keep_the_vectors(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgeptm.models.text import minilm_l6_spec

    texts = ["a cat sat on the mat", "a kitten rested on the rug", "quarterly revenue grew four percent"]
    # Reference: sentence-transformers' recipe for this model (mean pooling, then L2 normalisation).
    location = minilm_l6_spec().location
    tokenizer, model = AutoTokenizer.from_pretrained(location), AutoModel.from_pretrained(location).eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    onnx = export("minilm-l6", tmp_path / "onnx")
    int8 = quantize(onnx, tmp_path / "int8")
    assert onnx.task == int8.task == "feature-extraction"
    for artifact, tolerance in (("minilm-l6", 1e-5), (onnx.path, 1e-4), (int8.path, 0.15)):
        with edgeptm.load(artifact) as predictor:
            vectors = predictor.embed(texts)
        assert vectors.shape == (3, 384)
        assert np.abs(vectors - reference).max() < tolerance
        assert np.allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-3)
    assert int8.manifest["fidelity"]["min_cosine"] > 0.98

    result = CliRunner().invoke(cli, ["predict", str(int8.path), *texts])
    assert result.exit_code == 0, result.output
    cells = result.output.splitlines()[-3].split("|")  # the row of text [0]
    assert float(cells[3]) > float(cells[4])  # the cat is nearer the kitten than the revenue
