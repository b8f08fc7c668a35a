"""Targets as plug-ins: the registry is the only list of targets, every target is one package
with one descriptor, options belong to the target that declares them, and 'build' skips a stage
only when a runtime is missing here, never when an engine was built and then fails."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm import targets
from edgeptm.cli import cli
from edgeptm.errors import BackendError, ProfileError, RuntimeUnavailable, UsageError
from edgeptm.profiles import load_profile

PACKAGE = Path(edgeptm.__file__).parent
# How the code refers to each target: its name, its title and the runtime's own words.
WORDS = {
    "tensorrt": r"tensorrt",
    "aoti": r"\baoti\b|aotinductor",
    "openvino": r"openvino|nncf",
    "executorch": r"executorch|xnnpack",
    "ort-mobile": r"ort[-_ ]mobile|onnx runtime mobile|\.ort\b|ort format",
}
# ONNX Runtime's own execution provider for TensorRT is an ONNX Runtime setting, not the target.
NOT_THE_TARGET = {"runtime/ort_backend.py": ("tensorrt",)}


def test_the_registry_is_the_only_module_outside_each_target_that_names_it() -> None:
    assert set(WORDS) == set(targets.names()), "a new target: add how the code names it here"
    for name, words in WORDS.items():
        package = PACKAGE / "targets" / targets.get(name).build.split(".")[2]
        naming = []
        for path in sorted(PACKAGE.rglob("*.py")):
            relative = path.relative_to(PACKAGE).as_posix()
            if path.is_relative_to(package) or relative == "targets/registry.py":
                continue
            if name in NOT_THE_TARGET.get(relative, ()):
                continue
            if re.search(words, path.read_text(), re.IGNORECASE):
                naming.append(relative)
        assert naming == [], f"{name} is named outside its package and the registry: {naming}"


def test_every_target_is_one_package_with_a_complete_descriptor() -> None:
    for target in targets.TARGETS.values():
        module = target.build.split(":")[0].rsplit(".", 1)[0]
        assert target.backend.startswith(module + ".") and target.build.startswith(module + ".")
        assert target.compiles_from in ("onnx", "checkpoint") and target.build_from in (
            "checkpoint",
            "export",
            "quantize",
        )
        assert target.help.startswith(f"--target {target.name}:") and target.title and target.accepts
        for field in dataclasses.fields(target.options):
            assert field.metadata.get("help"), f"{target.name}: option {field.name} has no help"
        target.options().check()  # the defaults are valid
        assert callable(target.load("build")), "the build imports"
        if target.precisions:
            assert target.precisions[0] == "fp32"
        else:
            assert target.no_precision, "a target without precisions says why --precision is refused"


def test_the_cli_offers_what_the_registry_holds() -> None:
    shown = CliRunner().invoke(cli, ["compile", "--help"]).output
    for target in targets.TARGETS.values():
        assert f"--target {target.name}:" in shown
        for key in target.options.keys():
            assert f"--{key.replace('_', '-')}" in shown
    assert "[" + "|".join(targets.names()) + "]" in shown.replace("\n", "").replace(" ", "")


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndevice:\n  family: gpu\n" + text)
    return path


def test_a_profile_key_belongs_to_its_target(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"compile\.workspace_mb is for compile\.target tensorrt, not openvino"):
        load_profile(_profile(tmp_path, "compile:\n  target: openvino\n  workspace_mb: 512\n"))
    with pytest.raises(ProfileError, match=r"unknown key 'compile\.platfrom' \(allowed in compile: .*platform"):
        load_profile(_profile(tmp_path, "compile:\n  target: ort-mobile\n  platfrom: arm\n"))
    with pytest.raises(ProfileError, match=r"compile\.platform 'x86' is not one of arm, amd64"):
        load_profile(_profile(tmp_path, "compile:\n  target: ort-mobile\n  platform: x86\n"))
    profile = load_profile(_profile(tmp_path, "compile:\n  target: ort-mobile\n  platform: amd64\n"))
    assert profile.compile.platform == "amd64" and profile.compile.settings_for("ort-mobile").type_reduction
    assert profile.as_dict()["compile"]["platform"] == "amd64", "settings are shown as written: flat"
    assert any(line.startswith("runtime: ONNX Runtime Mobile") for line in edgeptm.profiles.explain(profile))


def test_explicit_options_beat_the_profile_and_are_checked_together(tmp_path: Path) -> None:
    from edgeptm.compile import CompileOptions, resolve

    path = _profile(tmp_path, "compile:\n  target: tensorrt\n  workspace_mb: 512\n  cuda_graph: true\n")
    target, options = resolve(CompileOptions(profile=str(path), workspace_mb=1024))
    assert target.name == "tensorrt" and options.settings.workspace_mb == 1024 and options.settings.cuda_graph
    with pytest.raises(UsageError, match="--dla-core ties the engine to its Jetson"):
        resolve(CompileOptions(target="tensorrt", dla_core=0, hardware_compatibility="ampere_plus"))
    with pytest.raises(UsageError, match="--no-such-option: no target has this option"):
        resolve(CompileOptions(target="aoti", no_such_option=1))


def _ort_engine(tiny_int8, root: Path):
    from edgeptm.compile import CompileOptions, compile

    return compile(tiny_int8, root / "engine", CompileOptions(target="ort-mobile"))


def test_build_skips_only_a_missing_runtime_and_fails_a_broken_engine(tiny_int8, tmp_path: Path) -> None:
    """A real engine, broken after it was built (its model file overwritten, the checksum made to
    match so the artifact verifies): loading it is a failure of the stage, with the runtime's
    reason, where a runtime that is not here is a skip."""
    from edgeptm.artifacts import open_artifact
    from edgeptm.build import Stage, _run
    from edgeptm.runtime.base import open_backend

    engine = _ort_engine(tiny_int8, tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(engine.path, broken)
    model = broken / engine.manifest["files"]["model"]["path"]
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["model"].update(sha256=hashlib.sha256(model.read_bytes()).hexdigest(), size=model.stat().st_size)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    artifact = open_artifact(broken)  # verifies: the damage is one the runtime finds

    stage = Stage("compile (ort-mobile)")
    with pytest.raises(BackendError, match="cannot load") as caught:
        _run(stage, lambda: open_backend(artifact), skippable=True)
    assert not isinstance(caught.value, RuntimeUnavailable)
    assert stage.status == "failed" and "cannot load" in stage.detail

    def missing() -> None:
        raise RuntimeUnavailable("TensorRT is not available here (no module named tensorrt)")

    skipped = Stage("compile (tensorrt)")
    assert _run(skipped, missing, skippable=True) is None and skipped.status == "skipped"


def test_every_engine_backend_checks_a_feed_once_against_the_engines_inputs(tiny_int8, tmp_path: Path) -> None:
    import numpy as np

    from edgeptm.runtime.base import open_backend

    engine = _ort_engine(tiny_int8, tmp_path)
    backend = open_backend(engine)
    with edgeptm.load(engine.path) as predictor:
        feed = predictor.encode(["a warm and funny film"])
    assert set(backend.run(feed)) == {"logits"}
    with pytest.raises(BackendError, match="input 'input_ids' is float32, this ORT format model takes int64"):
        backend.run({**feed, "input_ids": feed["input_ids"].astype(np.float32)})
    with pytest.raises(BackendError, match="the feed has no input 'attention_mask'"):
        backend.run({k: v for k, v in feed.items() if k != "attention_mask"})
    assert "edgeptm compile" in backend.rebuild and "--target ort-mobile" in backend.rebuild
    backend.close()
