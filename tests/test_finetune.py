from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeptm.artifacts import open_artifact
from edgeptm.errors import DataError, UsageError
from edgeptm.finetuning import finetune

from conftest import REVIEWS, tiny_options


def test_checkpoint_artifact(tiny_checkpoint):
    m = tiny_checkpoint.manifest
    assert m["kind"] == "checkpoint" and m["task"] == "text-classification"
    assert m["labels"] == ["negative", "positive"]
    assert 0.0 <= m["metrics"]["accuracy"] <= 1.0 and 0.0 <= m["metrics"]["macro_f1"] <= 1.0
    assert m["metrics"]["val_samples"] == 6  # 10% seeded split of 60 rows
    assert "seeded split" in m["training"]["validation"]
    for role in ("weights", "encoder_config", "val_data", "tokenizer/tokenizer.json"):
        assert tiny_checkpoint.file(role).is_file()
    assert [i["name"] for i in m["io"]["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    history = m["training"]["history"]
    assert len(history) == 8 and history[-1]["train_loss"] < history[0]["train_loss"], "training must learn"
    open_artifact(tiny_checkpoint.path)  # checksums verify


def _weights(artifact) -> str:
    return artifact.manifest["files"]["weights"]["sha256"]


def test_seeded_runs_are_identical(tiny_hf_dir: Path, tiny_checkpoint, tmp_path: Path):
    again = finetune(tiny_options(tiny_hf_dir), tmp_path / "again")
    assert _weights(again) == _weights(tiny_checkpoint)
    other = finetune(tiny_options(tiny_hf_dir, seed=1), tmp_path / "other")
    assert _weights(other) != _weights(tiny_checkpoint)


def test_freeze_backbone_trains_only_the_head(tiny_hf_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file

    from edgeptm.models.text import hf_spec

    artifact = finetune(tiny_options(tiny_hf_dir, freeze_backbone=True, epochs=1), tmp_path / "frozen")
    trained = load_file(str(artifact.file("weights")))
    pretrained = load_file(str(tiny_hf_dir / "model.safetensors"))
    for name, tensor in pretrained.items():
        if name.startswith("pooler."):
            continue  # the head uses its own pooling; BERT's pooler is not loaded
        assert (trained[f"encoder.{name}"] == tensor).all(), name
    assert hf_spec(str(tiny_hf_dir)).pooling == artifact.manifest["model"]["pooling"]


def test_resume_after_kill_matches_uninterrupted(tiny_hf_dir: Path, tmp_path: Path):
    """A real interruption: SIGKILL the CLI after its first checkpoint, then --resume."""
    args = [
        "--model",
        f"hf:{tiny_hf_dir}",
        "--train",
        str(REVIEWS),
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--lr",
        "2e-3",
        "--max-length",
        "32",
        "--seed",
        "0",
        "--threads",
        "1",
        "--checkpoint-every",
        "3",
    ]
    cli = [sys.executable, "-m", "edgeptm.cli", "-q", "finetune"]
    reference = tmp_path / "reference"
    subprocess.run(cli + args + ["--out", str(reference)], check=True, capture_output=True)

    out = tmp_path / "interrupted"
    state = tmp_path / ".interrupted.train-state" / "latest" / "state.json"
    proc = subprocess.Popen(cli + args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["global_step"] >= 6:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be interrupted; make the run longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "an interrupted run must not leave a partial artifact"
    killed_at = json.loads(state.read_text())["global_step"]

    subprocess.run(cli + args + ["--out", str(out), "--resume"], check=True, capture_output=True)
    resumed = open_artifact(out)
    assert resumed.manifest["training"]["resumed_from_step"] == killed_at
    assert _weights(resumed) == _weights(open_artifact(reference)), "resume must reproduce the uninterrupted run"
    assert not state.parent.parent.exists(), "training state is removed once the artifact is written"


def test_resume_with_other_settings_is_refused(tiny_hf_dir: Path, tmp_path: Path):
    from edgeptm.finetuning import _TrainState

    out = tmp_path / "x"
    state = _TrainState(out)
    state.latest.mkdir(parents=True)
    for name in ("model.safetensors", "optim.pt"):
        (state.latest / name).write_bytes(b"")
    (state.latest / "state.json").write_text(json.dumps({"fingerprint": {"epochs": 99}}))
    with pytest.raises(UsageError, match="different settings.*epochs"):
        finetune(tiny_options(tiny_hf_dir, resume=True), out)


def test_bad_options_fail_before_work(tiny_hf_dir: Path, tmp_path: Path):
    with pytest.raises(UsageError, match="--epochs must be >= 1"):
        finetune(tiny_options(tiny_hf_dir, epochs=0), tmp_path / "a")
    one_label = tmp_path / "one.csv"
    one_label.write_text("text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(UsageError, match="single label"):
        finetune(tiny_options(tiny_hf_dir, train=str(one_label)), tmp_path / "b")
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngreat,positive\nso so,neutral\n")
    with pytest.raises(DataError, match="label 'neutral' never appears"):
        finetune(tiny_options(tiny_hf_dir, val=str(val)), tmp_path / "c")
    with pytest.raises(UsageError, match=r"--max-length 129 exceeds what .* takes \(128 tokens\)"):
        finetune(tiny_options(tiny_hf_dir, max_length=129), tmp_path / "d")  # the tiny BERT has 128 positions
    assert not any(p.name in ("a", "b", "c", "d") for p in tmp_path.iterdir())


def test_torchrun_data_parallel(tiny_hf_dir: Path, tmp_path: Path):
    """Two real processes under torchrun (gloo): one artifact, written once, that learnt."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "edgeptm.cli",
        "-q",
        "finetune",
        "--model",
        f"hf:{tiny_hf_dir}",
        "--train",
        str(REVIEWS),
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--max-length",
        "32",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("checkpoint:") == 1, proc.stdout  # rank 0 alone reports
    artifact = open_artifact(out)
    training = artifact.manifest["training"]
    assert training["world_size"] == 2 and training["steps"] == 8 * 7  # 54 rows / 8 = 7 global batches
    history = training["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not (tmp_path / ".ddp.train-state").exists()
