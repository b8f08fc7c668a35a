"""Artifacts from elsewhere are data, not orders: each attack on the manifest and on native code,
reproduced with real artifacts and real processes, and refused with nothing read or written
outside the artifact and --out."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeptm.cli import cli

EXE = str(Path(sys.executable).parent / "edgeptm")


def run(*args) -> subprocess.CompletedProcess:
    """The installed entry point, in its own process."""
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=600)


def assert_refused(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeptm: error: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_manifest(directory: Path, change) -> dict:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    raw = change(manifest)  # a change may return the manifest's whole text instead
    path.write_text(raw if isinstance(raw, str) else json.dumps(manifest))
    return manifest


def register(directory: Path, role: str, rel: str, target: Path | None = None) -> None:
    """Point ``files[role]`` at ``rel`` with the checksum of what it reaches (as an attacker who
    recomputes checksums would)."""
    reached = target or (directory / rel)

    def change(m):
        m["files"][role] = {"path": rel, "sha256": sha256(reached), "size": reached.stat().st_size}

    edit_manifest(directory, change)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


# -- 1. writing outside --out -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_a_path_that_leaves_the_artifact_cannot_write_outside(tiny_onnx, tmp_path: Path, how: str) -> None:
    """A tokenizer file registered as '../../victim.txt', or reached through a symlink in the
    artifact, made quantize copy attacker content over a file outside --out (exit 0)."""
    work = tmp_path / "a" / "b"
    source = work / "onnx"
    shutil.copytree(tiny_onnx.path, source)
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    shipped = tmp_path / "shipped.txt"
    shipped.write_text("attacker content\n")
    if how == "dotdot":
        register(source, "tokenizer/evil", "../../../victim.txt", target=victim)
    else:
        (source / "tokenizer" / "evil").symlink_to(shipped)
        register(source, "tokenizer/evil", "tokenizer/evil")
    before = tree(tmp_path)
    proc = run("quantize", source, "--out", work / "int8")
    assert_refused(proc, "outside the artifact|symlink|climbs out")
    assert victim.read_text() == "the user's own file\n"
    assert tree(tmp_path) == before and not (work / "int8").exists()


def test_the_writer_never_writes_outside_staging(tmp_path: Path) -> None:
    from edgeptm.artifacts import ArtifactWriter
    from edgeptm.errors import ArtifactError

    outside = tmp_path / "outside"
    outside.mkdir()
    with ArtifactWriter(tmp_path / "out") as writer:
        for bad in ("../x", "/etc/x", "a/../../x", ""):
            with pytest.raises(ArtifactError):
                writer.add("r", bad)
        (writer.dir / "link").symlink_to(outside)
        with pytest.raises(ArtifactError, match="resolves outside"):
            writer.add("r", "link/x")
    assert list(outside.iterdir()) == []


# -- 2. reading outside the artifact ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda m, other: m["files"]["model"].update(path=str(other / "model.onnx")), "absolute path"),
        (lambda m, other: m["files"]["model"].update(path=f"../{other.name}/model.onnx"), "climbs out"),
        (lambda m, other: m["preprocessing"].update(tokenizer=f"../{other.name}/tokenizer"), "climbs out"),
        (lambda m, other: m["model"].update(encoder_config="/etc"), "absolute path"),
    ],
    ids=["absolute-model", "dotdot-model", "tokenizer-dir", "encoder-config-dir"],
)
def test_a_path_that_leaves_the_artifact_is_not_read(tiny_int8, tiny_onnx, tmp_path: Path, change, pattern) -> None:
    """predict served another directory's ONNX model; a tokenizer directory pointed elsewhere
    silently changed a prediction."""
    copy, other = tmp_path / "int8", tmp_path / "other"
    shutil.copytree(tiny_int8.path, copy)
    shutil.copytree(tiny_onnx.path, other)
    edit_manifest(copy, lambda m: change(m, other))
    assert_refused(run("predict", copy, "a fine film"), pattern)


def test_files_the_manifest_does_not_checksum_are_refused(tiny_int8, tmp_path: Path) -> None:
    """The tokenizer directory is read as a whole: a file added to it (unchecked) or a symlinked
    tokenizer directory would change what the artifact does."""
    copy = tmp_path / "int8"
    shutil.copytree(tiny_int8.path, copy)
    (copy / "tokenizer" / "added_tokens.json").write_text('{"film": 1}')
    assert_refused(run("predict", copy, "a fine film"), "'tokenizer/added_tokens.json' is not listed in the manifest")
    (copy / "tokenizer" / "added_tokens.json").unlink()
    shutil.move(copy / "tokenizer", tmp_path / "elsewhere")
    (copy / "tokenizer").symlink_to(tmp_path / "elsewhere")
    assert_refused(run("predict", copy, "a fine film"), "symlink")


# -- 4. native code runs only when trusted ------------------------------------------------------


@pytest.fixture(scope="module")
def aoti_engine(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    from edgeptm.compile import CompileOptions, compile

    return compile(tiny_checkpoint, tmp_path_factory.mktemp("aoti") / "engine", CompileOptions(max_batch=4))


CONSTRUCTOR = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("EDGEPTM_TEST_MARKER");
    if (marker) { FILE *f = fopen(marker, "w"); if (f) { fputs("constructor ran\n", f); fclose(f); } }
}
"""


def plant_library(engine: Path, tmp_path: Path) -> Path:
    """A copy of ``engine`` whose .pt2 holds a shared library with a constructor, with the
    manifest's checksums recomputed (so every checksum verifies)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler here to build the planted shared library")
    source = tmp_path / "planted.c"
    source.write_text(CONSTRUCTOR)
    library = tmp_path / "planted.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, source], check=True)
    copy = tmp_path / "engine"
    shutil.copytree(engine, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    package = copy / manifest["files"]["model"]["path"]
    rebuilt = tmp_path / "rebuilt.pt2"
    replaced = []
    with zipfile.ZipFile(package) as old, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename.endswith(".so"):
                data = library.read_bytes()
                replaced.append(item.filename)
            new.writestr(item, data)
    assert replaced, "the AOTInductor package holds no shared library to replace"
    shutil.move(rebuilt, package)
    register(copy, "model", manifest["files"]["model"]["path"])
    return copy


def test_a_planted_shared_library_is_refused_before_it_loads(aoti_engine, tmp_path: Path) -> None:
    """Replacing the .so in a .pt2 and recomputing the checksums made predict run its
    constructor. Now: verify passes (checksums are fine), predict and bench refuse before the
    library is mapped; once the user trusts it, the constructor does run (the gate is what
    stops it)."""
    copy = plant_library(aoti_engine.path, tmp_path)
    marker = tmp_path / "constructor-ran"
    env = {**os.environ, "EDGEPTM_TEST_MARKER": str(marker)}

    def edgeptm(*args):
        return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)

    verified = edgeptm("verify", copy)
    assert verified.returncode == 0 and "trusted here: no" in verified.stdout, verified
    assert_refused(edgeptm("predict", copy, "a fine film"), "runs native code .*not trusted here.*edgeptm trust")
    assert_refused(edgeptm("bench", copy, "--iterations", "2"), "not trusted here")
    assert not marker.exists(), "the planted constructor ran"
    assert edgeptm("trust", copy).returncode == 0
    edgeptm("predict", copy, "a fine film")  # may fail after loading: the library has no model in it
    assert marker.exists(), "trusted, the package is loaded (so the refusal above is what protected)"


def test_built_here_is_trusted_and_a_copy_keeps_its_digest(aoti_engine, tmp_path: Path) -> None:
    from edgeptm import trust

    assert trust.lookup(aoti_engine.digest)["how"] == "built here"
    copy = tmp_path / "moved"
    shutil.copytree(aoti_engine.path, copy)
    first = run("verify", copy)
    assert first.returncode == 0 and f"digest: {aoti_engine.digest}" in first.stdout
    assert "trusted here: yes (built here)" in first.stdout
    assert run("predict", copy, "a fine film").returncode == 0


def test_a_changed_manifest_is_another_artifact_and_a_pin_loads_it(aoti_engine, tmp_path: Path) -> None:
    copy = tmp_path / "engine"
    shutil.copytree(aoti_engine.path, copy)
    edit_manifest(copy, lambda m: m["metrics"].update(accuracy=1.0))
    assert_refused(run("predict", copy, "x"), "not trusted here")
    digest = json.loads(run("verify", copy, "--json").stdout)["digest"]
    assert digest != aoti_engine.digest
    assert run("predict", copy, "x", "--digest", digest).returncode == 0
    assert_refused(run("predict", copy, "x", "--digest", aoti_engine.digest), "is not the pinned")
    assert_refused(run("verify", copy, "--digest", "sha256:abc"), "expected sha256:<64 hex digits>")


def test_a_tensorrt_plan_is_refused_untrusted_before_tensorrt_is_asked(tiny_onnx, tmp_path: Path) -> None:
    """No TensorRT here, so the order shows: an untrusted plan is refused by the trust gate,
    not by the missing library (which would come first if the gate came after deserializing)."""
    engine = tmp_path / "plan"
    shutil.copytree(tiny_onnx.path, engine)
    (engine / "model.onnx").unlink()
    (engine / "model.plan").write_bytes(b"\x00plan with host code\x00")

    def change(m):
        m["kind"] = "engine"
        m["compile"] = {"target": "tensorrt", "tensorrt": "10.9.0", "version_compatible": True}
        del m["files"]["model"]

    edit_manifest(engine, change)
    register(engine, "model", "model.plan")
    assert_refused(run("predict", engine, "x"), r"TensorRT plan model.plan \(version-compatible.*not trusted here")


# -- 6. staging left by kill -9 is reclaimed ----------------------------------------------------


def test_staging_left_by_a_killed_stage_is_reclaimed_by_the_next(tiny_onnx, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = subprocess.Popen([EXE, "quantize", tiny_onnx.path, "--mode", "static-int8", "--out", runs / "a"])
    deadline = time.monotonic() + 120
    while not list(runs.glob(".a.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [p for p in runs.glob(".a.tmp-*") if p.is_dir()]
    assert left, "the stage finished before it could be killed; nothing to reclaim"
    after = run("quantize", tiny_onnx.path, "--out", runs / "b")
    assert after.returncode == 0, after.stderr
    assert f"removed {left[0].name}" in after.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["b"]


def test_a_live_writer_is_left_alone_and_an_interrupted_swap_is_undone(tmp_path: Path) -> None:
    from edgeptm.artifacts import ArtifactWriter, reclaim_staging

    with ArtifactWriter(tmp_path / "live") as live:  # its lock is held: another writer must not touch it
        (live.dir / "half.bin").write_bytes(b"x" * 10)
        with ArtifactWriter(tmp_path / "other"):
            pass
        assert live.dir.is_dir()
    old = tmp_path / ".model.old-0123abcd"  # the previous --out, moved aside by a writer killed mid-swap
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert reclaim_staging(tmp_path) and (tmp_path / "model" / "manifest.json").is_file() and not old.exists()
    build = tmp_path / "build"  # a build killed half way: its old --out waits aside as .prev
    (build / "onnx").mkdir(parents=True)
    prev = tmp_path / ".build.prev-89abcdef"
    prev.mkdir()
    (prev / "build-report.json").write_text("{}")
    os.utime(prev, (past, past))
    reclaim_staging(tmp_path)
    assert sorted(p.name for p in build.iterdir()) == ["build-report.json"] and not prev.exists()


def test_set_aside_puts_the_old_output_back_when_the_block_fails(tmp_path: Path) -> None:
    from edgeptm.artifacts import set_aside

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old build")
    with pytest.raises(RuntimeError), set_aside(out) as replacing:
        assert replacing and list(out.iterdir()) == []
        (out / "half").write_text("new, unfinished")
        raise RuntimeError("a stage failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "keep.txt").read_text() == "old build"
    with set_aside(out):
        (out / "new.txt").write_text("complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in out.iterdir()] == ["new.txt"]


# -- 7. a malformed manifest is one line, never a traceback -------------------------------------


def _nest(m):
    m.pop("metrics")
    return json.dumps(m)[:-1] + ', "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda m: m.update(files=list(m["files"].values())), "'files' must be an object, not a list"),
        (lambda m: m.update(files=None), "'files' must be an object, not null"),
        (lambda m: m["files"]["model"].pop("sha256") and None, "no 'files.model.sha256'"),
        (lambda m: m["preprocessing"].update(max_length="abc"), "'preprocessing.max_length' must be an integer"),
        (_nest, "nests deeper than"),
        (lambda m: m.pop("io") and None, "manifest has no 'io'"),
        (lambda m: m.update(labels=["only-one"]), "1 labels for a model with 2 outputs"),
    ],
    ids=["files-list", "files-null", "no-sha256", "max-length-abc", "deep", "no-io", "labels-short"],
)
def test_malformed_manifests_are_one_line(tiny_int8, tmp_path: Path, change, pattern) -> None:
    copy = tmp_path / "int8"
    shutil.copytree(tiny_int8.path, copy)
    edit_manifest(copy, change)
    assert_refused(run("predict", copy, "a fine film"), pattern)


def test_verify_prints_one_digest_per_artifact(tiny_int8, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", str(tiny_int8.path)], catch_exceptions=False)
    assert result.exit_code == 0 and f"digest: {tiny_int8.digest}" in result.output
    assert "native code: none" in result.output
    copy = tmp_path / "copy"
    shutil.copytree(tiny_int8.path, copy)
    assert json.loads(run("verify", copy, "--json").stdout)["digest"] == tiny_int8.digest


# -- the property: whatever a manifest says, one line or a result, nothing outside touched ------

_READS: list[str] = []
_WATCH: list[bool] = [False]


def _audit(event: str, args: tuple) -> None:
    if _WATCH[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _READS.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only while _WATCH is set


def _json_values():
    from hypothesis import strategies as st

    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12)
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=8,
    )


def _nodes(value, where=()):
    """Every (container, key) in a JSON tree, so a mutation can hit any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield where + (key,)
        yield from _nodes(item, where + (key,))


def _mutate(data, manifest: dict, artifact: Path, outside: Path) -> str:
    from hypothesis import strategies as st

    # Half the draws hit a key that names a path (the ones an attacker aims at), half any key.
    paths = [("files", role, "path") for role in manifest["files"]]
    paths += [("preprocessing", "tokenizer"), ("model", "encoder_config")]
    where = data.draw(st.sampled_from(paths) | st.sampled_from(list(_nodes(manifest))), label="where")
    parent = manifest
    for key in where[:-1]:
        parent = parent[key]
    key = where[-1]
    how = data.draw(st.sampled_from(["drop", "replace", "nest", "absolute", "dotdot", "symlink"]), label="how")
    if how == "drop":
        del parent[key]
    elif how == "replace":
        parent[key] = data.draw(_json_values(), label="value")
    elif how == "nest":
        value = parent[key]
        for _ in range(data.draw(st.integers(2, 400), label="depth")):
            value = [value]
        parent[key] = value
    elif how == "absolute":
        parent[key] = str(outside / data.draw(st.sampled_from(["model.onnx", "tokenizer", "x"]), label="name"))
    elif how == "dotdot":
        parent[key] = f"../{outside.name}/" + data.draw(st.sampled_from(["model.onnx", "tokenizer"]), label="name")
    else:
        link = artifact / "lnk"
        if not link.is_symlink():
            link.symlink_to(outside)
        parent[key] = "lnk/" + data.draw(st.sampled_from(["model.onnx", "tokenizer"]), label="name")
    return f"{how} at {'.'.join(map(str, where))}"


def _check_hostile_manifest(data, source: Path, command: list[str], tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        root = Path(scratch)
        artifact, outside, out = root / "artifact", root / "outside", root / "out"
        shutil.copytree(source, artifact)
        shutil.copytree(source, outside)  # a lure: another artifact's model and tokenizer
        manifest = json.loads((artifact / "manifest.json").read_text())
        what = _mutate(data, manifest, artifact, outside)
        (artifact / "manifest.json").write_text(json.dumps(manifest))
        before = tree(outside)
        args = [a.format(artifact=artifact, out=out) for a in command]
        _READS.clear()
        _WATCH[0] = True
        try:
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
        finally:
            _WATCH[0] = False
        assert result.exit_code in (0, 1), (what, result.exit_code, result.output)
        if result.exit_code == 1:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("edgeptm: error: "), (what, result.stderr)
        touched = [r for r in _READS if Path(r).resolve().is_relative_to(outside.resolve())]
        assert not touched, (what, touched)
        assert tree(outside) == before, what
        assert sorted(p.name for p in root.iterdir()) in (["artifact", "outside"], ["artifact", "out", "outside"])


def _fuzz_settings(examples: int) -> dict:
    """Derandomized (the same examples on every run, so CI cannot flake); EDGEPTM_FUZZ_EXAMPLES=N
    explores N fresh random ones instead."""
    from hypothesis import HealthCheck

    more = int(os.environ.get("EDGEPTM_FUZZ_EXAMPLES", "0"))
    return dict(
        max_examples=more or examples,
        derandomize=not more,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def test_any_manifest_mutation_is_one_line_and_stays_inside_on_predict(tiny_int8, tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(**_fuzz_settings(60))
    @given(st.data())
    def check(data):
        _check_hostile_manifest(data, tiny_int8.path, ["predict", "{artifact}", "a gripping film"], tmp_path)

    check()


def test_any_manifest_mutation_is_one_line_and_stays_inside_on_quantize(tiny_onnx, tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(**_fuzz_settings(20))
    @given(st.data())
    def check(data):
        command = ["quantize", "{artifact}", "--out", "{out}"]
        _check_hostile_manifest(data, tiny_onnx.path, command, tmp_path)

    check()


def test_any_manifest_mutation_is_one_line_and_stays_inside_on_a_checkpoint(tiny_checkpoint, tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(**_fuzz_settings(20))
    @given(st.data())
    def check(data):
        _check_hostile_manifest(data, tiny_checkpoint.path, ["predict", "{artifact}", "a gripping film"], tmp_path)

    check()


def test_a_timing_cache_may_not_land_inside_an_artifact(tiny_onnx, tmp_path: Path) -> None:
    """TensorRT writes its timing cache back: refused inside the source before any build starts."""
    before = tree(tiny_onnx.path)
    result = run(
        "compile",
        tiny_onnx.path,
        "--target",
        "tensorrt",
        "--timing-cache",
        tiny_onnx.path / "manifest.json",
        "--out",
        tmp_path / "engine",
    )
    assert_refused(result, "--timing-cache .*(input|artifact)")
    assert tree(tiny_onnx.path) == before
