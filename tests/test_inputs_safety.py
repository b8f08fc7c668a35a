"""Inputs are never harmed: --force deletes no input, stages write nothing into their sources,
reports land outside artifacts, and hostile or inconsistent files fail with one line.

Each test reproduces the attack or accident with real processes (the installed ``edgeptm``) or the
real stage functions on real tiny artifacts, and checks both the refusal and that the input is intact.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeptm.artifacts import open_artifact
from edgeptm.cli import cli
from edgeptm.errors import ArtifactError, DataError, ModelError, ProfileError, UsageError

from conftest import REVIEWS, tiny_options

EDGEPTM = shutil.which("edgeptm", path=str(Path(sys.executable).parent))
INPUT = r".*\binput\b"  # how a refused --out names the input it would overwrite (wording is artifacts.py's)


# ---- helpers -----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too), files with their sha256."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def run_edgeptm(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed entry point, as a user runs it."""
    assert EDGEPTM, "the edgeptm console script is not installed next to this python"
    return subprocess.run([EDGEPTM, "-q", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit 1 and exactly one line on stderr, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeptm: error: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_cli_refused(result, pattern: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeptm: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def copy_artifact(artifact, to: Path) -> Path:
    shutil.copytree(artifact.path, to)
    return to


def replace_file(artifact_dir: Path, role: str, data: bytes) -> None:
    """Put ``data`` in place of a registered file and record its sha256 and size in the manifest,
    so that checksum verification passes and the loader itself meets the content."""
    manifest_path = artifact_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["files"][role]
    (artifact_dir / entry["path"]).write_bytes(data)
    entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    manifest_path.write_text(json.dumps(manifest, indent=2))


class DirWatch:
    """What is created, written, moved or deleted under a directory while watched: Linux inotify,
    the kernel's own record, so a file made and removed between two listings still shows."""

    # IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    MASK = 0x2 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200

    def __init__(self, root: Path) -> None:
        if not sys.platform.startswith("linux"):
            pytest.skip("inotify is Linux's")
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.folders = {}
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(folder), self.MASK)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.folders[wd] = folder

    def events(self) -> list[str]:
        seen = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                seen.append(str(self.folders.get(wd, "?") / Path(name)))
                offset += 16 + length

    def __enter__(self) -> "DirWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path: Path) -> Path:
    return copy_artifact(tiny_checkpoint, tmp_path / "A" / "ckpt")


# ---- 1. --force never deletes an input ----------------------------------------------------------


def test_export_over_the_folder_of_its_checkpoint_is_refused(checkpoint_copy: Path) -> None:
    """The reported accident: 'export A/ckpt --out A --force' deleted the checkpoint and its siblings."""
    root = checkpoint_copy.parent
    (root / "notes.txt").write_text("a sibling of the checkpoint")
    before = snapshot(root)
    proc = run_edgeptm("export", checkpoint_copy, "--out", root, "--force")
    assert_refused(proc, rf"--out .*A: {INPUT}.*ckpt")
    for out in (checkpoint_copy, checkpoint_copy / "sub"):
        assert_cli_refused(invoke("export", checkpoint_copy, "--out", out, "--force"), rf"{INPUT}.*ckpt")
    assert snapshot(root) == before
    open_artifact(checkpoint_copy)  # still whole, checksums and all


def write_images(folder: Path, count: int = 2) -> None:
    from PIL import Image

    for label, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 8), colour).save(folder / label / f"{i}.png")


def test_finetune_over_its_training_data_is_refused(tmp_path: Path, tiny_hf_dir: Path) -> None:
    """'finetune --train photos --out photos --force' deleted the training images; so would an --out
    holding the training CSV, the --val file, or the images an image list names."""
    photos = tmp_path / "photos"
    write_images(photos)
    before = snapshot(photos)
    proc = run_edgeptm("finetune", "--model", "efficientnet-lite0", "--train", photos, "--out", photos, "--force")
    assert_refused(proc, rf"--out .*photos: {INPUT}.*photos")
    assert snapshot(photos) == before

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(REVIEWS, data / "train.csv")
    shutil.copy(REVIEWS, data / "val.csv")
    model = f"hf:{tiny_hf_dir}"
    result = invoke("finetune", "--model", model, "--train", data / "train.csv", "--out", data, "--force")
    assert_cli_refused(result, rf"{INPUT}.*train\.csv")
    elsewhere = tmp_path / "elsewhere.csv"
    shutil.copy(REVIEWS, elsewhere)
    result = invoke(
        "finetune", "--model", model, "--train", elsewhere, "--val", data / "val.csv", "--out", data, "--force"
    )
    assert_cli_refused(result, rf"{INPUT}.*val\.csv")
    assert sorted(p.name for p in data.iterdir()) == ["train.csv", "val.csv"]

    # An image list may name images anywhere: --out may not be (or hold) their folder.
    from edgeptm.finetuning import finetune

    images = tmp_path / "images"
    write_images(images)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"images/{c}/{i}.png,{c}\n" for c in ("cat", "dog") for i in (0, 1)))
    kept = snapshot(images)
    opts = tiny_options(tiny_hf_dir, model="torchvision:resnet18", pretrained=False, train=str(listing), image_size=32)
    with pytest.raises(UsageError, match=r"--out .*images/cat: is the folder .*images/cat of images listed in"):
        finetune(opts, images / "cat", force=True)
    with pytest.raises(UsageError, match=r"contains the folder .*images/cat"):
        finetune(opts, images, force=True)
    assert snapshot(images) == kept


def test_build_over_its_checkpoint_is_refused(checkpoint_copy: Path, tmp_path: Path) -> None:
    """'build CKPT --out CKPT --force' removed the checkpoint before anything checked it."""
    root = checkpoint_copy.parent
    before = snapshot(root)
    proc = run_edgeptm("build", checkpoint_copy, "--profile", "cpu-x86-avx512", "--out", checkpoint_copy, "--force")
    assert_refused(proc, rf"--out .*ckpt: {INPUT}.*ckpt")
    for out in (root, checkpoint_copy / "inside"):
        result = invoke("build", checkpoint_copy, "--profile", "cpu-x86-avx512", "--out", out, "--force")
        assert_cli_refused(result, rf"{INPUT}.*ckpt")
    # a profile given by path, and --calib / --val, are inputs too
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(Path(__file__).parents[1] / "export_profiles" / "cpu-x86-avx512.yaml", profiles / "mine.yaml")
    result = invoke("build", checkpoint_copy, "--profile", profiles / "mine.yaml", "--out", profiles, "--force")
    assert_cli_refused(result, rf"{INPUT}.*mine\.yaml")
    shutil.copy(REVIEWS, profiles / "val.csv")
    result = invoke(
        "build", checkpoint_copy, "--profile", "cpu-x86-avx512", "--val", profiles / "val.csv", "--out", profiles
    )
    assert_cli_refused(result, rf"{INPUT}.*val\.csv")
    assert snapshot(root) == before and sorted(p.name for p in profiles.iterdir()) == ["mine.yaml", "val.csv"]


def test_build_with_force_replaces_the_old_out_only_when_the_new_one_is_complete(tiny_checkpoint, tmp_path) -> None:
    from edgeptm.build import BuildOptions, build

    out = tmp_path / "orin"
    out.mkdir()
    (out / "keep.txt").write_text("the previous build")
    bad_val = tmp_path / "val.csv"
    bad_val.write_text("text,label\na fine film,neutral\n")  # a label the checkpoint never learnt: quantize fails
    with pytest.raises(DataError, match=rf"label 'neutral' never appears.*\({re.escape(str(out))} left as it was\)"):
        build(tiny_checkpoint, out, BuildOptions(profile="cpu-x86-avx512", bench=False, val=str(bad_val)), force=True)
    assert snapshot(out) == {"keep.txt": hashlib.sha256(b"the previous build").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orin", "val.csv"], "nothing left beside --out"

    report = build(tiny_checkpoint, out, BuildOptions(profile="cpu-x86-avx512", bench=False), force=True)
    assert not (out / "keep.txt").exists() and (out / "build-report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orin", "val.csv"], "the old --out is gone, nothing else"
    for variant in report["variants"][1:]:  # built artifacts, recorded at their final paths
        assert Path(variant["artifact"]).parent == out and open_artifact(variant["artifact"])
    quantized = open_artifact(out / "dynamic-int8")
    assert quantized.manifest["parents"][0]["path"] == str(out / "onnx")


def test_quantize_and_compile_refuse_an_out_holding_their_data(tiny_onnx, tmp_path: Path) -> None:
    from edgeptm.compile import CompileOptions, compile

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(REVIEWS, data / "val.csv")
    texts = data / "calib.csv"
    texts.write_text("text\n" + "".join(f"a line about film number {i}\n" for i in range(12)))
    result = invoke("quantize", tiny_onnx.path, "--val", data / "val.csv", "--out", data, "--force")
    assert_cli_refused(result, rf"{INPUT}.*val\.csv")
    result = invoke(
        "quantize",
        tiny_onnx.path,
        "--mode",
        "static-int8",
        "--calib",
        texts,
        "--out",
        data / "calib.csv" / "x",
        "--force",
    )
    assert_cli_refused(result, rf"{INPUT}.*calib\.csv")
    with pytest.raises(UsageError, match=rf"{INPUT}.*calib\.csv"):
        compile(tiny_onnx, data, CompileOptions(target="openvino", precision="int8", calib=str(texts)), force=True)
    assert sorted(p.name for p in data.iterdir()) == ["calib.csv", "val.csv"]


# ---- 2. stages never write into their sources -------------------------------------------------


@pytest.mark.parametrize("mode", ["dynamic-int8", "static-int8", "fp16"])
def test_quantize_writes_nothing_into_its_source(tiny_onnx, tmp_path: Path, mode: str) -> None:
    """ONNX Runtime's quantizer writes model-inferred.onnx (and more) beside the model it reads: it
    must read a private copy. The kernel's record of the source folder shows no write at all."""
    from edgeptm.quantization import QuantizeOptions, quantize

    before = snapshot(tiny_onnx.path)
    with DirWatch(tiny_onnx.path) as watch:
        quantize(tiny_onnx, tmp_path / mode, QuantizeOptions(mode=mode))
        written = watch.events()
    assert written == [], f"quantize wrote into its source: {written}"
    assert snapshot(tiny_onnx.path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [mode], "no work files left beside --out"
    registered = [Path(f["path"]) for f in open_artifact(tmp_path / mode).manifest["files"].values()]
    expected = {"manifest.json"} | {p.as_posix() for f in registered for p in (f, *f.parents) if p != Path(".")}
    assert set(snapshot(tmp_path / mode)) == expected, "the artifact holds its registered files only"


def test_two_concurrent_quantize_runs_of_one_source(tiny_onnx, tmp_path: Path) -> None:
    """Two real processes quantizing one source at once shared its model-inferred.onnx (1 run in 10
    crashed). Three trials: every run succeeds and the source folder is never written."""
    source = copy_artifact(tiny_onnx, tmp_path / "onnx")
    before = snapshot(source)
    with DirWatch(source) as watch:
        for trial in range(3):
            procs = [
                subprocess.Popen(
                    [
                        EDGEPTM,
                        "-q",
                        "quantize",
                        str(source),
                        "--mode",
                        "dynamic-int8",
                        "--out",
                        str(tmp_path / f"q{trial}{i}"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(2)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
        written = watch.events()
    assert written == [], f"quantize wrote into its source: {written}"
    assert snapshot(source) == before
    for trial in range(3):
        for i in range(2):
            assert open_artifact(tmp_path / f"q{trial}{i}").manifest["precision"] == "int8-dynamic"


def test_export_and_openvino_write_nothing_into_their_sources(tiny_checkpoint, tmp_path: Path) -> None:
    from edgeptm.exporter import ExportOptions, export

    with DirWatch(tiny_checkpoint.path) as watch:
        export(tiny_checkpoint, tmp_path / "onnx")  # with ONNX Runtime's transformer optimizer
        plain = export(tiny_checkpoint, tmp_path / "plain", ExportOptions(optimize=False))
        assert watch.events() == []
    pytest.importorskip("openvino")
    from edgeptm.compile import CompileOptions, compile

    with DirWatch(plain.path) as watch:
        compile(plain, tmp_path / "ov", CompileOptions(target="openvino", shapes=["input_ids:1x16"]))
        assert watch.events() == []


# ---- 3. bench reports stay out of artifacts ---------------------------------------------------


def test_bench_report_inside_an_artifact_is_refused(tiny_onnx, tmp_path: Path) -> None:
    """'bench A --report A/manifest' overwrote A's manifest.json with the bench report."""
    artifact = copy_artifact(tiny_onnx, tmp_path / "A")
    before = snapshot(artifact)
    proc = run_edgeptm("bench", artifact, "--iterations", "1", "--report", artifact / "manifest")
    assert_refused(proc, r"--report .*manifest\.json: lies inside the input")
    other = copy_artifact(tiny_onnx, tmp_path / "B")  # not benchmarked, still an artifact
    cases = [
        (["--report", other / "tokenizer" / "r"], r"--report .*: lies inside the artifact directory .*B"),
        (["--json", artifact / "bench.json"], r"--json .*: lies inside the input"),
        (["--json", other / "bench.json"], r"lies inside the artifact directory"),
    ]
    for extra, pattern in cases:
        assert_cli_refused(invoke("bench", artifact, "--iterations", "1", *extra), pattern)
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\n")
    result = invoke("bench", artifact, "--profile", profile, "--iterations", "1", "--json", profile)
    assert_cli_refused(result, r"--json .*mine\.yaml: is the input")
    assert profile.read_text() == "name: mine\n"
    assert snapshot(artifact) == before and sorted(p.name for p in tmp_path.iterdir()) == ["A", "B", "mine.yaml"]

    from edgeptm.benchmarking.report import write_reports

    with pytest.raises(UsageError, match="lies inside the artifact directory"):
        write_reports({"results": []}, artifact / "sub" / "r")
    assert snapshot(artifact) == before


# ---- 4. hostile or inconsistent files: one line, never a traceback -----------------------------


class Payload:
    """Unpickling this creates a file: proof, if the file appears, that a pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_junk_or_a_pickle_as_checkpoint_weights(tiny_checkpoint, checkpoint_copy: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    import edgeptm

    replace_file(checkpoint_copy, "weights", os.urandom(4096))
    proc = run_edgeptm("predict", checkpoint_copy, "a warm film")
    assert_refused(proc, r"model\.safetensors: not a readable safetensors weights file")

    marker = tmp_path / "pwned"
    replace_file(checkpoint_copy, "weights", pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(ModelError, match="not a readable safetensors weights file"):
        edgeptm.load(checkpoint_copy)
    assert not marker.exists()

    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoint.file("weights")))
    name = next(iter(state))
    state[name] = torch.zeros(3, 3)  # a valid file, one tensor of another shape
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong))
    replace_file(checkpoint_copy, "weights", wrong.read_bytes())
    with pytest.raises(ModelError, match="weights do not fit the architecture"):
        edgeptm.load(checkpoint_copy)


RESUME_ARGS = [
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
    "--seed",
    "0",
    "--threads",
    "1",
]  # fmt: skip  (the settings of conftest.tiny_options, so its fingerprint matches)


@pytest.fixture(scope="module")
def killed_run_state(tiny_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training state: the CLI killed after its first checkpoints."""
    root = tmp_path_factory.mktemp("killed")
    state = root / ".run.train-state"
    args = ["finetune", "--model", f"hf:{tiny_hf_dir}", *RESUME_ARGS, "--checkpoint-every", "1"]
    proc = subprocess.Popen(
        [EDGEPTM, "-q", *args, "--out", str(root / "run")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads((state / "latest" / "state.json").read_text())["global_step"] >= 2:
                break
        except (OSError, ValueError):  # not written yet, or being replaced
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return state


def planted(killed_run_state: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    """A copy of the killed run's state with ``name`` replaced; returns the --out that resumes it."""
    shutil.copytree(killed_run_state, tmp_path / ".run.train-state")
    (tmp_path / ".run.train-state" / "latest" / name).write_bytes(data)
    return tmp_path / "run"


def test_resume_from_the_real_state_works(killed_run_state: Path, tiny_hf_dir: Path, tmp_path: Path) -> None:
    """The control: the unplanted state resumes (so the refusals below are about the planted file)."""
    from edgeptm.finetuning import finetune

    shutil.copytree(killed_run_state, tmp_path / ".run.train-state")
    artifact = finetune(tiny_options(tiny_hf_dir, resume=True), tmp_path / "run")
    assert artifact.manifest["training"]["resumed_from_step"] >= 2


def test_a_pickle_planted_as_optim_pt_never_runs(killed_run_state: Path, tiny_hf_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = planted(killed_run_state, tmp_path, "optim.pt", pickle.dumps({"optimizer": Payload(marker)}))
    proc = run_edgeptm("finetune", "--model", f"hf:{tiny_hf_dir}", *RESUME_ARGS, "--out", out, "--resume")
    assert_refused(proc, r"optim\.pt: not a training state this run can resume")
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists()


def _torch_file(obj) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _real_blob(killed_run_state: Path) -> dict:
    import torch

    return torch.load(killed_run_state / "latest" / "optim.pt", weights_only=True)


@pytest.mark.parametrize(
    "name, make",
    [
        ("optim.pt", lambda state, marker: os.urandom(2048)),
        ("optim.pt", lambda state, marker: _torch_file({"optimizer": Payload(marker)})),  # zip format, same payload
        ("optim.pt", lambda state, marker: _torch_file({"optimizer": {}, "scheduler": {}, "rng": 3})),
        # real optimizer state, one moment of the wrong shape: AdamW would fail at its first step
        (
            "optim.pt",
            lambda state, marker: _torch_file(
                {
                    **_real_blob(state),
                    "optimizer": {
                        **_real_blob(state)["optimizer"],
                        "state": {
                            k: {**v, "exp_avg": v["exp_avg"].flatten()[:1]}
                            for k, v in _real_blob(state)["optimizer"]["state"].items()
                        },
                    },
                }
            ),
        ),
        # real state, a scheduler entry that would replace the scheduler's optimizer attribute
        (
            "optim.pt",
            lambda state, marker: _torch_file(
                {**_real_blob(state), "scheduler": {**_real_blob(state)["scheduler"], "optimizer": {}}}
            ),
        ),
        ("model.safetensors", lambda state, marker: os.urandom(2048)),
        ("state.json", lambda state, marker: b'{"fingerprint": 1}'),
    ],
    ids=["junk", "zip-pickle", "wrong-contents", "misshapen-moment", "scheduler-keys", "junk-weights", "state-json"],
)
def test_planted_training_state_fails_in_one_line(
    killed_run_state: Path, tiny_hf_dir: Path, tmp_path: Path, name: str, make
) -> None:
    from edgeptm.finetuning import finetune

    marker = tmp_path / "pwned"
    out = planted(killed_run_state, tmp_path, name, make(killed_run_state, marker))
    with pytest.raises(ArtifactError, match=rf"{re.escape(name)}: not a training state this run can resume") as info:
        finetune(tiny_options(tiny_hf_dir, resume=True), out)
    assert "\n" not in str(info.value)
    assert not marker.exists() and not out.exists()


def test_labels_that_do_not_match_the_outputs(tiny_onnx, tmp_path: Path) -> None:
    """Labels name the model's outputs one to one: a longer list indexed past the scores (IndexError
    in predict), a shorter one named the wrong classes. The manifest's io may be edited to agree
    with the labels: the model's actual outputs decide."""
    import edgeptm

    for labels in (["negative", "positive", "neutral"], ["negative"]):
        for edit_io in (False, True):
            artifact = copy_artifact(tiny_onnx, tmp_path / f"onnx{len(labels)}{'-io' * edit_io}")
            manifest = json.loads((artifact / "manifest.json").read_text())
            manifest["labels"] = labels
            if edit_io:
                manifest["io"]["outputs"][0]["shape"] = ["batch", len(labels)]
            (artifact / "manifest.json").write_text(json.dumps(manifest))
            proc = run_edgeptm("predict", artifact, "a warm film")
            assert_refused(proc, rf"\b{len(labels)} labels\b.*\b2\b (scores|outputs)")
        with edgeptm.load(artifact) as predictor:  # labels and io agree: refused when the model answers
            with pytest.raises(ArtifactError, match=rf"lists {len(labels)} labels but the model outputs 2 scores"):
                predictor.top_k(["a warm film"], 1)
            with pytest.raises(ArtifactError, match="but the model outputs 2 scores"):
                predictor.predict(["a warm film"])


def test_a_long_text_cell_reads_from_csv_and_tsv_as_from_jsonl(tmp_path: Path) -> None:
    """csv's default field limit (128 KiB) made a long review 'malformed CSV'; JSONL took it."""
    from edgeptm.data.text import read_text_table

    long = "a long review " * 20_000  # 280 KB
    (tmp_path / "t.csv").write_text(f'text,label\n"{long}",positive\nshort,negative\n')
    (tmp_path / "t.tsv").write_text(f"text\tlabel\n{long}\tpositive\nshort\tnegative\n")
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"text": long, "label": "positive"}) + "\n" + json.dumps({"text": "short", "label": "negative"})
    )
    for name in ("t.csv", "t.tsv", "t.jsonl"):
        data = read_text_table(tmp_path / name)
        assert data.texts == [long, "short"] and data.labels == ["positive", "negative"], name


@pytest.mark.parametrize("value", ["-5", "-0.5", ".nan"])
def test_a_negative_max_accuracy_drop_in_a_profile_is_refused(tiny_onnx, tmp_path: Path, value: str) -> None:
    from edgeptm.profiles import load_profile

    profile = tmp_path / "strict.yaml"
    profile.write_text(f"name: strict\nquantize:\n  max_accuracy_drop: {value}\n")
    with pytest.raises(ProfileError, match=rf"{re.escape(str(profile))}: quantize\.max_accuracy_drop must be >= 0"):
        load_profile(profile)
    result = invoke("quantize", tiny_onnx.path, "--profile", profile, "--out", tmp_path / "q")
    assert_cli_refused(result, r"strict\.yaml: quantize\.max_accuracy_drop must be >= 0")
    assert not (tmp_path / "q").exists()
