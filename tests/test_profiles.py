from __future__ import annotations

from pathlib import Path

import pytest

from edgeptm.errors import ProfileError
from click.testing import CliRunner

from edgeptm.cli import cli
from edgeptm.profiles import Profile, explain, list_profiles, load_profile, pick, profiles_dir

SHIPPED = sorted(profiles_dir().glob("*.yaml"))
GPU_PROFILES = ["jetson-orin-nano", "jetson-agx-orin", "nvidia-t4", "nvidia-datacenter"]


def test_required_profiles_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"cpu-x86-avx512", "cpu-arm64", *GPU_PROFILES} <= names


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
    assert profile.requires, "a profile says what the device must have installed"
    lines = explain(profile)
    assert any(line.startswith("use: ") and f"--profile {path.stem}" in line for line in lines)


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


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_gpu_profiles_build_tensorrt_engines(name: str):
    profile = load_profile(name)
    assert profile.device.family in ("gpu", "jetson")
    assert profile.compile.target == "tensorrt" and profile.runtime.backend == "tensorrt"
    assert profile.quantize.mode in ("static-int8", "fp16"), "TensorRT builds static INT8 Q/DQ or FP16 graphs"
    if profile.quantize.mode == "static-int8":
        assert profile.quantize.activations == "int8", "TensorRT builds symmetric INT8 Q/DQ only"
    assert profile.export.optimize is False, "ONNX Runtime's fused com.microsoft ops do not parse in TensorRT"
    assert profile.device.compute_capability and profile.compile.batch and profile.compile.seq_len


def test_cpu_profiles_run_onnx_directly():
    for name in ("cpu-arm64", "cpu-x86-avx512"):
        profile = load_profile(name)
        assert profile.device.family == "cpu"
        assert profile.compile.target is None and profile.runtime.backend == "onnxruntime"


def test_agx_orin_uses_dla_with_static_shapes():
    profile = load_profile("jetson-agx-orin")
    assert profile.device.dla_cores == 2
    assert profile.compile.dla_core == 0 and profile.compile.gpu_fallback
    assert profile.compile.batch == [1, 1, 1] and profile.compile.seq_len == [128, 128, 128]
    lines = explain(profile)
    assert any(line.startswith("shapes: batch 1 (static), sequence 128 (static); the sequence") for line in lines)
    assert any("DLA core 0" in line and "fall back to the GPU" in line for line in lines)


def test_orin_nano_has_no_dla():
    profile = load_profile("jetson-orin-nano")
    assert profile.device.dla_cores == 0 and profile.compile.dla_core is None
    assert profile.device.compute_capability == "8.7"


def test_explain_precision_by_task_and_tensorrt_versions():
    cpu = explain(load_profile("cpu-arm64"))
    assert any("by task: dynamic INT8 for text, static INT8 Q/DQ for images" in line for line in cpu)
    assert any(line.startswith("runtime: ONNX Runtime runs the ONNX directly") for line in cpu)
    assert not any(line.startswith("TensorRT 1") for line in cpu)
    nano = explain(load_profile("jetson-orin-nano"))
    assert any(line.startswith("TensorRT 10:") and "INT8 flag" in line for line in nano)
    assert any(line.startswith("TensorRT 11:") and "strongly typed" in line for line in nano)
    datacenter = explain(load_profile("nvidia-datacenter"))
    assert any(line.startswith("compatibility:") and "Ampere or newer" in line for line in datacenter)
    assert any("same major version" in line for line in datacenter)


def test_explain_says_what_openvino_builds_and_keeps_the_onnx_runtime_line_apart():
    lines = explain(load_profile("cpu-x86-openvino"))
    runtime = next(line for line in lines if line.startswith("runtime:"))
    assert "OpenVINO" in runtime and "IR" in runtime and "ONNX Runtime" not in runtime
    precision = next(line for line in lines if line.startswith("precision:"))
    assert "NNCF post-training INT8" in precision and "300 samples" in precision
    assert any(line.startswith("compared with: ONNX Runtime artifacts built beside it, by task") for line in lines)
    assert any(line.startswith("accuracy guard: quantize and compile write nothing") for line in lines)


def test_explain_names_the_file_of_a_profile_outside_the_shipped_ones(tmp_path: Path):
    path = _write(tmp_path, "name: p\n")
    assert explain(load_profile(path))[-1] == f"use: edgeptm build runs/ckpt --profile {path} --out runs/p"


def test_cli_show_explains_then_lists_settings():
    result = CliRunner().invoke(cli, ["profiles", "show", "jetson-orin-nano"])
    assert result.exit_code == 0, result.output
    words, _, settings = result.output.partition("\nsettings:\n")
    for phrase in ("TensorRT", "compute capability 8.7", "no DLA", "--profile jetson-orin-nano", "JetPack 6"):
        assert phrase in words
    assert "  compile:" in settings and "batch: [1, 1, 4]" in settings


def test_cli_list_shows_every_profile():
    result = CliRunner().invoke(cli, ["profiles", "list"])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "profile",
        "family",
        "target",
        "precision",
        "threads",
        "description",
    ]
    for path in SHIPPED:
        assert f"| {path.stem} " in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("| jetson-orin-nano "))
    assert "| jetson " in row and "| tensorrt " in row and "| static-int8 " in row
    row = next(line for line in result.output.splitlines() if line.startswith("| cpu-arm64 "))
    assert "| onnxruntime " in row and "| by task " in row


GPU_BASE = "name: p\ndevice:\n  family: jetson\n  dla_cores: {dla}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("compile:\n  target: trt\n", r"compile\.target 'trt' is not one of tensorrt, aoti"),
        ("compile:\n  batch: [4, 1, 8]\n", r"compile\.batch must be \[min, opt, max\]"),
        ("compile:\n  seq_len: [1, 128]\n", r"compile\.seq_len must be \[min, opt, max\]"),
        ("compile:\n  optimization_level: 7\n", r"compile\.optimization_level must be 0\.\.5, got 7"),
        ("compile:\n  hardware_compatibility: any\n", r"compile\.hardware_compatibility 'any'"),
        ("compile:\n  workspace_mb: 0\n", r"compile\.workspace_mb must be >= 1"),
        ("compile:\n  dla_core: 0\n  batch: [1, 1, 1]\n", r"compile\.dla_core is set but the device has no DLA"),
        ("device:\n  compute_capability: sm87\n", r"device\.compute_capability must look like '8\.7', got 'sm87'"),
        ("device:\n  compute_capability: 8.7\n", r"'device\.compute_capability' must be str, got float"),
        ("device:\n  family: phone\n", r"device\.family 'phone' is not one of cpu, gpu, jetson"),
        ("runtime:\n  backend: tensorrt\n", r"runtime\.backend 'tensorrt'.*set compile\.target: tensorrt"),
        ("compile:\n  target: tensorrt\n", r"compile\.target 'tensorrt' needs an NVIDIA GPU.*device\.family is 'cpu'"),
        ("compile:\n  target: aoti\n  precision: int8\n", r"compile\.precision is for compile\.target openvino or"),
        ("compile:\n  target: executorch\n  precision: bf16\n", r"'bf16': ExecuTorch's XNNPACK target builds fp32"),
    ],
)
def test_compile_and_device_errors_name_the_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(ProfileError, match=message):
        load_profile(_write(tmp_path, "name: p\n" + text))


@pytest.mark.parametrize(
    "compile_section, message",
    [
        ("  dla_core: 2\n  batch: [1, 1, 1]\n", r"compile\.dla_core 2, but the device has 2 DLA cores"),
        ("  dla_core: 0\n", r"compile\.dla_core needs static shapes.*compile\.batch"),
        (
            "  dla_core: 0\n  batch: [1, 1, 1]\n  hardware_compatibility: ampere_plus\n",
            r"compile\.hardware_compatibility 'ampere_plus' with compile\.dla_core",
        ),
        ("  dla_core: 0\n  batch: [1, 1, 4]\n", r"compile\.batch \[1, 1, 4\] is dynamic, but DLA runs only static"),
        (
            "  dla_core: 0\n  batch: [1, 1, 1]\n  seq_len: [1, 128, 128]\n",
            r"compile\.seq_len \[1, 128, 128\] is dynamic",
        ),
    ],
)
def test_dla_errors_name_the_key(tmp_path: Path, compile_section: str, message: str):
    text = GPU_BASE.format(dla=2) + "compile:\n  target: tensorrt\n" + compile_section
    with pytest.raises(ProfileError, match=message):
        load_profile(_write(tmp_path, text))


def test_tensorrt_refuses_dynamic_int8(tmp_path: Path):
    text = GPU_BASE.format(dla=0) + "quantize:\n  mode: dynamic-int8\ncompile:\n  target: tensorrt\n"
    with pytest.raises(ProfileError, match=r"quantize\.mode 'dynamic-int8'.*static-int8 or fp16"):
        load_profile(_write(tmp_path, text))


def test_tensorrt_static_int8_needs_symmetric_activations(tmp_path: Path):
    text = GPU_BASE.format(dla=0) + "quantize:\n  mode: static-int8\ncompile:\n  target: tensorrt\n"
    with pytest.raises(ProfileError, match=r"quantize\.activations 'uint8' with compile\.target 'tensorrt'"):
        load_profile(_write(tmp_path, text))
    with pytest.raises(ProfileError, match=r"quantize\.activations 'u8' is not one of uint8, int8"):
        load_profile(_write(tmp_path, "name: p\nquantize:\n  activations: u8\n"))
    profile = load_profile(_write(tmp_path, text.replace("static-int8\n", "static-int8\n  activations: int8\n")))
    assert any("symmetric int8 activations" in line for line in explain(profile))


def test_a_dla_profile_with_static_shapes_loads(tmp_path: Path):
    text = GPU_BASE.format(dla=2) + "compile:\n  target: tensorrt\n  dla_core: 1\n  batch: [2, 2, 2]\n"
    profile = load_profile(_write(tmp_path, text))
    assert profile.compile.dla_core == 1 and profile.device.dla_cores == 2
