"""AOTInductor for real: compile, validate, serve, refuse what cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm.cli import cli
from edgeptm.compile import CompileOptions, compile
from edgeptm.errors import BackendError, UsageError


@pytest.fixture(scope="module")
def text_engine(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    return compile(tiny_checkpoint, tmp_path_factory.mktemp("aoti") / "engine", CompileOptions(max_batch=8))


def test_text_engine_matches_eager_and_serves(text_engine, tiny_checkpoint) -> None:
    m = text_engine.manifest
    assert text_engine.kind == "engine" and m["compile"]["target"] == "aoti"
    longest = tiny_checkpoint.preprocessing["max_length"]
    assert m["compile"]["dynamic_shapes"]["input_ids"] == {"batch": [1, 8], "sequence": [1, longest]}
    assert m["validation"]["max_abs_diff"] < 1e-3 and m["metrics"]["accuracy"] == tiny_checkpoint.metrics["accuracy"]
    texts = ["a warm and funny film", "a dull, lifeless and far too long film", "fine"]
    with edgeptm.load(tiny_checkpoint.path) as eager, edgeptm.load(text_engine.path) as engine:
        assert engine.backend.name == "aoti-cpu"
        np.testing.assert_allclose(engine.logits(texts), eager.logits(texts), atol=1e-4)
    report = edgeptm.bench([text_engine.path], edgeptm.BenchOptions(iterations=5, warmup=1, rounds=1, seq_len=longest))
    assert report["results"][0]["backend"] == "aoti-cpu" and report["results"][0]["p50_ms"] > 0


def test_shapes_outside_the_compiled_bounds_are_explained(text_engine) -> None:
    with edgeptm.load(text_engine.path) as engine:
        assert engine.batch_size == 8 and engine.logits(["x"] * 9).shape[0] == 9  # the Predictor splits
        with pytest.raises(BackendError, match="batch 9 is outside the 1..8.*--max-batch"):
            engine.backend.run(engine.encode(["x"] * 9))


def engine_built_elsewhere(engine, directory: Path, **compile_record) -> Path:
    """A copy of ``engine`` whose manifest says it was built with other ``compile`` settings."""
    import shutil

    shutil.copytree(engine.path, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["compile"].update(compile_record)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    # Another manifest is another artifact: trusted as a user would, after 'edgeptm trust'.
    from edgeptm import trust
    from edgeptm.artifacts import open_artifact

    trust.record(open_artifact(directory), "test: trusted copy", ["AOTInductor shared library"])
    return directory


def test_engine_from_another_torch_is_refused_with_the_rebuild_command(text_engine, tmp_path: Path) -> None:
    copy = engine_built_elsewhere(text_engine, tmp_path / "engine", torch="2.0.0")
    with pytest.raises(BackendError, match=r"built with torch 2.0.0.*edgeptm compile .* --target aoti"):
        edgeptm.load(copy)


def test_compile_takes_checkpoints_only(tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="takes a checkpoint artifact"):
        compile(tiny_onnx, tmp_path / "e")
    result = CliRunner().invoke(cli, ["compile", str(tiny_onnx.path), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "checkpoint" in result.output and not (tmp_path / "e").exists()


@pytest.mark.slow
def test_image_engine_through_the_cli(tmp_path: Path) -> None:
    from edgeptm.finetuning import finetune
    from test_vision import _image_options, write_colour_images

    data = write_colour_images(tmp_path / "data", per_class=8, corrupt=False)
    ckpt = finetune(_image_options(data, "torchvision:resnet18", epochs=2), tmp_path / "ckpt")
    result = CliRunner().invoke(cli, ["compile", str(ckpt.path), "--out", str(tmp_path / "engine"), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    image = str(data / "green" / "003.png")  # odd indices are .png, even .jpg
    with edgeptm.load(ckpt.path) as eager, edgeptm.load(tmp_path / "engine") as engine:
        np.testing.assert_allclose(engine.logits([image]), eager.logits([image]), atol=1e-4)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU (none here; benchmarks/gpu_check.py runs it on one)")
def test_cuda_package_matches_eager_records_its_gpu_and_refuses_another(tiny_checkpoint, tmp_path: Path) -> None:
    engine = compile(tiny_checkpoint, tmp_path / "cuda", CompileOptions(device="cuda", max_batch=8))
    info = engine.manifest["compile"]
    assert info["device"] == "cuda" and info["gpu"] and info["compute_capability"]
    assert engine.manifest["validation"]["max_abs_diff"] < 1e-3
    texts = ["a warm and funny film", "a dull, lifeless and far too long film", "fine"]
    with edgeptm.load(tiny_checkpoint.path) as eager, edgeptm.load(engine.path) as cuda:
        assert cuda.backend.name == "aoti-cuda"
        np.testing.assert_allclose(cuda.logits(texts), eager.logits(texts), atol=1e-3)
    report = edgeptm.bench([engine.path], edgeptm.BenchOptions(iterations=20, warmup=2, rounds=1))
    assert report["results"][0]["backend"] == "aoti-cuda" and report["results"][0]["p50_ms"] > 0
    copy = engine_built_elsewhere(engine, tmp_path / "other-gpu", compute_capability="1.0")
    with pytest.raises(BackendError, match=r"compiled for compute capability 1\.0.*--device cuda"):
        edgeptm.load(copy)
