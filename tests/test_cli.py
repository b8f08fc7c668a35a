"""The command line: help everywhere, real runs, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeptm.cli import COMMANDS, cli

from conftest import REVIEWS


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeptm: error: ")
    import re

    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(
    "command",
    [[]]
    + [[c] for c in COMMANDS]
    + [["profiles", "list"], ["profiles", "show"], ["bench", "run"], ["bench", "compare"]],
)
def test_help_everywhere(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_installed_entry_point_runs():
    exe = shutil.which("edgeptm", path=str(Path(sys.executable).parent))
    assert exe, "the edgeptm console script is not installed next to this python"
    proc = subprocess.run([exe, "models", "--json"], capture_output=True, text=True, check=True)
    names = [row["name"] for row in json.loads(proc.stdout)]
    assert "minilm-l6" in names


def test_predict_prints_nothing_but_predictions(tiny_checkpoint):
    """A real process on a text checkpoint (transformers, torchao imported): stdout holds the
    prediction, stderr stays empty (torch's torchao Enum deprecation warnings are filtered)."""
    exe = shutil.which("edgeptm", path=str(Path(sys.executable).parent))
    proc = subprocess.run([exe, "predict", tiny_checkpoint.path, "a warm film"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split("\t")[0] in ("negative", "positive"), proc
    assert proc.stderr == "", proc.stderr


def test_models_and_profiles():
    assert "minilm-l6" in run("models").output
    assert "cpu-x86-avx512" in run("profiles", "list").output
    shown = run("profiles", "show", "cpu-arm64")
    assert shown.exit_code == 0 and "threads: 4" in shown.output


def test_predict_json_same_for_checkpoint_and_onnx(tiny_checkpoint, tiny_onnx):
    texts = ["a warm and funny film", "a dull and lifeless film"]
    outputs = []
    for artifact in (tiny_checkpoint, tiny_onnx):
        result = run("predict", artifact.path, *texts, "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert [r["input"] for r in rows] == texts
        assert [[set(p) for p in r["predictions"]] for r in rows] == [[{"label", "score"}]] * 2
        outputs.append([r["predictions"][0] for r in rows])
    assert [r["label"] for r in outputs[0]] == [r["label"] for r in outputs[1]]
    plain = run("predict", tiny_onnx.path, texts[0])
    assert plain.output.split("\t")[0] in ("negative", "positive")


def test_full_path_through_the_cli(tiny_hf_dir: Path, tmp_path: Path):
    ckpt, onnx, int8 = tmp_path / "ckpt", tmp_path / "onnx", tmp_path / "int8"
    result = run(
        "-q",
        "finetune",
        "--model",
        f"hf:{tiny_hf_dir}",
        "--train",
        REVIEWS,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-length",
        "24",
        "--threads",
        "1",
        "--out",
        ckpt,
    )
    assert result.exit_code == 0, result.output
    assert "val accuracy" in result.output
    assert run("-q", "export", ckpt, "--out", onnx, "--profile", "cpu-x86-avx512").exit_code == 0
    result = run("-q", "quantize", onnx, "--out", int8, "--max-accuracy-drop", "100")
    assert result.exit_code == 0 and "points" in result.output
    report = tmp_path / "bench.json"
    result = run(
        "bench",
        ckpt,
        onnx,
        int8,
        "--iterations",
        "4",
        "--warmup",
        "1",
        "--rounds",
        "2",
        "--seq-len",
        "16",
        "--threads",
        "1",
        "--json",
        report,
    )
    assert result.exit_code == 0, result.output
    assert "model compute only" in result.output and "speedup" in result.output
    data = json.loads(report.read_text())
    assert len(data["results"]) == 3 and data["results"][2]["precision"] == "int8-dynamic"


# --- bad input: one line on stderr, exit 1, nothing written -------------------------------------


@pytest.fixture()
def tiny_model_arg(tiny_hf_dir: Path) -> str:
    return f"hf:{tiny_hf_dir}"


def _finetune(model: str, train: Path, out: Path, *extra: str):
    return run("finetune", "--model", model, "--train", train, "--epochs", "1", "--out", out, *extra)


def test_bad_training_inputs(tiny_model_arg: str, tmp_path: Path):
    out = tmp_path / "out"
    assert_one_line_error(_finetune(tiny_model_arg, tmp_path / "missing.csv", out), r"missing\.csv: no such file")
    cols = tmp_path / "cols.csv"
    cols.write_text("sentence,label\nhi,a\n")
    assert_one_line_error(_finetune(tiny_model_arg, cols, out), r"no column 'text' \(columns: sentence, label\)")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "fine", "label": "a"}\n{"text": "", "label": "b"}\n')
    assert_one_line_error(_finetune(tiny_model_arg, empty, out), r"empty\.jsonl:2: empty text")
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngreat,positive\nmeh,neutral\n")
    assert_one_line_error(_finetune(tiny_model_arg, REVIEWS, out, "--val", val), "label 'neutral' never appears")
    assert_one_line_error(_finetune("gpt-17", REVIEWS, out), "unknown model 'gpt-17'")
    assert not out.exists()


def test_out_must_be_empty_unless_forced(tiny_model_arg: str, tiny_onnx, tmp_path: Path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(_finetune(tiny_model_arg, REVIEWS, out), "not empty.*--force")
    assert_one_line_error(run("quantize", tiny_onnx.path, "--out", out), "not empty.*--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_artifacts(tiny_onnx, tmp_path: Path):
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_onnx.path, tampered)
    with open(tampered / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    assert_one_line_error(run("predict", tampered, "hi"), "does not match its manifest checksum")
    assert_one_line_error(run("quantize", tampered, "--out", tmp_path / "q"), "does not match its manifest checksum")
    no_manifest = tmp_path / "bare"
    no_manifest.mkdir()
    assert_one_line_error(run("bench", no_manifest), "no manifest.json")
    fake = tmp_path / "fake.onnx"
    fake.write_text("definitely not protobuf")
    assert_one_line_error(run("quantize", fake, "--out", tmp_path / "q"), r"fake\.onnx: not an ONNX model")
    assert not (tmp_path / "q").exists()


def test_bad_profile(tiny_checkpoint, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nexport:\n  opset: seventeen\n")
    assert_one_line_error(
        run("export", tiny_checkpoint.path, "--profile", bad, "--out", tmp_path / "o"), r"'export\.opset' must be int"
    )
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: u\nexport:\n  opsett: 17\n")
    assert_one_line_error(
        run("export", tiny_checkpoint.path, "--profile", unknown, "--out", tmp_path / "o"),
        r"unknown key 'export\.opsett'",
    )
    assert_one_line_error(run("profiles", "show", "nope"), "unknown profile 'nope'")
    assert not (tmp_path / "o").exists()


def test_usage_errors_exit_2(tiny_onnx, tmp_path: Path):
    result = run("quantize", tiny_onnx.path, "--mode", "int3", "--out", tmp_path / "x")
    assert result.exit_code == 2


def test_out_may_not_replace_its_source(tiny_onnx, tmp_path: Path):
    copy = tmp_path / "onnx"
    shutil.copytree(tiny_onnx.path, copy)
    assert_one_line_error(run("quantize", copy, "--out", copy, "--force"), "would overwrite its own input")
    assert (copy / "manifest.json").is_file()
