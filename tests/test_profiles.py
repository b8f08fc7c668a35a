from __future__ import annotations

from pathlib import Path

import pytest

from edgeptm.errors import ProfileError
from edgeptm.profiles import Profile, list_profiles, load_profile, pick, profiles_dir

SHIPPED = sorted(profiles_dir().glob("*.yaml"))


def test_required_profiles_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"cpu-x86-avx512", "cpu-arm64"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_loads_and_validates(path: Path):
    profile = load_profile(path.stem)
    assert isinstance(profile, Profile)
    assert profile.name == path.stem, "a profile's name must match its file name"
    assert profile.description
    assert profile.quantize.max_accuracy_drop is not None
    assert profile.runtime.threads and profile.runtime.threads >= 1
    # The header comment shows the command that uses the profile.
    assert f"--profile {path.stem}" in path.read_text().split("\nname:")[0]
    assert len(profile.sha256) == 64


def test_list_profiles_matches_files():
    assert [p.name for p in list_profiles()] == [p.stem for p in SHIPPED]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named(tmp_path: Path):
    path = _write(tmp_path, "name: p\nquantize:\n  mdoe: dynamic-int8\n")
    with pytest.raises(ProfileError, match=r"unknown key 'quantize\.mdoe'"):
        load_profile(path)


def test_unknown_top_level_key(tmp_path: Path):
    with pytest.raises(ProfileError, match="unknown key 'runtimes'"):
        load_profile(_write(tmp_path, "name: p\nruntimes: {}\n"))


def test_wrong_type_is_named(tmp_path: Path):
    with pytest.raises(ProfileError, match=r"'bench\.batch_size' must be int, got str"):
        load_profile(_write(tmp_path, "name: p\nbench:\n  batch_size: one\n"))
    with pytest.raises(ProfileError, match=r"'export\.optimize' must be bool"):
        load_profile(_write(tmp_path, "name: p\nexport:\n  optimize: 1\n"))


def test_bad_values_and_yaml(tmp_path: Path):
    with pytest.raises(ProfileError, match="quantize.mode 'int4'"):
        load_profile(_write(tmp_path, "name: p\nquantize:\n  mode: int4\n"))
    with pytest.raises(ProfileError, match="runtime.threads must be >= 1"):
        load_profile(_write(tmp_path, "name: p\nruntime:\n  threads: 0\n"))
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(_write(tmp_path, "name: p\nbench: [\n"))
    with pytest.raises(ProfileError, match="mapping of sections"):
        load_profile(_write(tmp_path, "- a\n- b\n"))


def test_unknown_profile_lists_known():
    with pytest.raises(ProfileError, match="unknown profile 'jetson-nope'.*cpu-arm64"):
        load_profile("jetson-nope")


def test_float_accepts_int(tmp_path: Path):
    profile = load_profile(_write(tmp_path, "name: p\nquantize:\n  max_accuracy_drop: 2\n"))
    assert profile.quantize.max_accuracy_drop == 2.0 and isinstance(profile.quantize.max_accuracy_drop, float)


def test_precedence():
    assert pick(4, 2, 1) == 4
    assert pick(None, 2, 1) == 2
    assert pick(None, None, 1) == 1
    assert pick(False, True, True) is False  # an explicit False is an explicit choice
