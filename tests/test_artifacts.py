from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeptm.artifacts import ArtifactWriter, open_artifact
from edgeptm.errors import ArtifactError, UsageError


def _make(out: Path, force: bool = False, content: str = "hello"):
    with ArtifactWriter(out, force=force) as writer:
        writer.add("model", "model.bin").write_text(content)
        io = {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 3]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2]}],
        }
        model = {"encoder_type": "bert", "encoder_config": "encoder", "pooling": "cls"}
        manifest = {"task": "text-classification", "labels": ["a", "b"], "io": io, "model": model}
        return writer.finish("onnx", {**manifest, "preprocessing": {"tokenizer": "tokenizer", "max_length": 8}})


def test_round_trip_records_checksums(tmp_path: Path):
    artifact = _make(tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["kind"] == "onnx"
    assert manifest["files"]["model"]["size"] == 5
    assert manifest["environment"]["packages"]["onnx"]
    again = open_artifact(tmp_path / "a")
    assert again.labels == ["a", "b"] and again.file("model").read_text() == "hello"
    assert artifact.manifest_sha256 == again.manifest_sha256


def test_failure_leaves_nothing(tmp_path: Path):
    out = tmp_path / "a"
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out) as writer:
            writer.add("model", "model.bin").write_text("half")
            raise RuntimeError("stage failed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "staging directory must be cleaned up"


def test_refuses_non_empty_out_unless_forced(tmp_path: Path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(UsageError, match="not empty.*--force"):
        _make(out)
    assert (out / "precious.txt").read_text() == "keep"
    _make(out, force=True, content="new")
    assert not (out / "precious.txt").exists()
    assert open_artifact(out).file("model").read_text() == "new"


def test_empty_existing_out_is_fine(tmp_path: Path):
    (tmp_path / "a").mkdir()
    _make(tmp_path / "a")
    assert open_artifact(tmp_path / "a").kind == "onnx"


def test_tampered_file_is_refused(tmp_path: Path):
    _make(tmp_path / "a")
    (tmp_path / "a" / "model.bin").write_text("HELLO")  # same size, other bytes
    with pytest.raises(ArtifactError, match="does not match its manifest checksum"):
        open_artifact(tmp_path / "a")


def test_missing_file_and_manifest(tmp_path: Path):
    _make(tmp_path / "a")
    (tmp_path / "a" / "model.bin").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        open_artifact(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        open_artifact(tmp_path / "b")
    with pytest.raises(ArtifactError, match="no such artifact"):
        open_artifact(tmp_path / "c")


def test_bogus_onnx_file(tmp_path: Path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a protobuf")
    with pytest.raises(ArtifactError, match="not an ONNX model"):
        open_artifact(fake)


def test_schema_version_checked(tmp_path: Path):
    _make(tmp_path / "a")
    path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        open_artifact(tmp_path / "a")
