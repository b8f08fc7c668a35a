"""TensorRT: everything around the library that runs without it (graph checks, shape profiles,
settings, compatibility refusal, the missing-library message), plus the real build on machines
that have TensorRT and a GPU (skipped elsewhere, with the reason)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm.artifacts import Artifact
from edgeptm.cli import cli
from edgeptm.compile import CompileOptions, compile
from edgeptm.compile.shapes import parse_shapes, shape_ranges
from edgeptm.targets.tensorrt.build import builder_flags, check_buildable, graph_precision
from edgeptm.errors import BackendError, UsageError
from edgeptm.quantization import QuantizeOptions, quantize
from edgeptm.targets.tensorrt.backend import check_compatible
from test_compile import engine_built_elsewhere

TEXT_INPUTS = [
    {"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
    {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "sequence"]},
]
IMAGE_INPUTS = [{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, 96, 96]}]
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def variants(tiny_checkpoint, tiny_onnx, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    from edgeptm.exporter import ExportOptions, export

    root = tmp_path_factory.mktemp("trt-variants")
    plain = export(tiny_checkpoint, root / "plain", ExportOptions(optimize=False))  # standard ONNX ops only
    return {
        "optimized": tiny_onnx,  # ONNX Runtime's fused Attention & co.
        "fp32": plain,
        "dynamic": quantize(plain, root / "dyn", QuantizeOptions(mode="dynamic-int8")),
        "static-uint8": quantize(plain, root / "u8", QuantizeOptions(mode="static-int8", calib_samples=16)),
        "static-int8": quantize(
            plain, root / "s8", QuantizeOptions(mode="static-int8", calib_samples=16, activations="int8")
        ),
        "fp16": quantize(plain, root / "fp16", QuantizeOptions(mode="fp16")),
    }


def _graph(artifact: Artifact, role: str = "model") -> dict:
    return graph_precision(onnx.load(str(artifact.file(role)), load_external_data=False))


def test_precision_is_read_from_the_graph(variants) -> None:
    # the export's ONNX Runtime graph is the derived file beside the portable model
    info = {name: _graph(a, "ort-model" if name == "optimized" else "model") for name, a in variants.items()}
    assert info["fp32"]["precision"] == "fp32" and not info["fp32"]["fp16_tensors"]
    assert info["fp16"]["precision"] == "fp16" and info["fp16"]["fp16_tensors"]
    assert info["dynamic"]["dynamic_int8_nodes"] > 0
    assert info["static-uint8"]["asymmetric_quantize_nodes"], "uint8 activations have non-zero zero points"
    symmetric = info["static-int8"]
    assert symmetric["precision"] == "int8-qdq" and symmetric["qdq_nodes"] > 0
    assert symmetric["asymmetric_quantize_nodes"] == [] and symmetric["dynamic_int8_nodes"] == 0
    for name in ("fp32", "fp16", "static-int8"):
        check_buildable(info[name], name)  # no error: TensorRT can build these
    with pytest.raises(UsageError, match="dynamic INT8.*--mode static-int8 --activations int8"):
        check_buildable(info["dynamic"], "x")
    with pytest.raises(UsageError, match="uint8 or a non-zero zero point.*--activations int8"):
        check_buildable(info["static-uint8"], "x")
    assert "Attention" in info["optimized"]["onnxruntime_ops"] and info["fp32"]["onnxruntime_ops"] == []
    with pytest.raises(UsageError, match=r"ONNX Runtime's own fused operators \(.*Attention.*--no-optimize"):
        check_buildable(info["optimized"], "x")


def test_symmetric_int8_activations_keep_accuracy_and_run_on_onnxruntime(variants) -> None:
    art = variants["static-int8"]
    assert art.manifest["quantization"]["activation_type"] == "int8"
    texts = ["a warm and funny film", "dull"]
    with edgeptm.load(art) as q, edgeptm.load(variants["fp32"]) as f:
        cosine = (q.logits(texts) * f.logits(texts)).sum(-1) / (
            np.linalg.norm(q.logits(texts), axis=-1) * np.linalg.norm(f.logits(texts), axis=-1)
        )
    assert cosine.min() > 0.95


def test_activations_option_is_for_static_int8_only(tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--activations is for --mode static-int8"):
        quantize(tiny_onnx, tmp_path / "x", QuantizeOptions(mode="dynamic-int8", activations="int8"))


def test_tensorrt_10_flags_follow_the_graph_and_11_builds_strongly_typed(variants) -> None:
    # the export's ONNX Runtime graph is the derived file beside the portable model
    info = {name: _graph(a, "ort-model" if name == "optimized" else "model") for name, a in variants.items()}
    assert builder_flags(info["fp32"], 10, dla=False) == []
    assert builder_flags(info["fp16"], 10, dla=False) == ["FP16"]
    assert builder_flags(info["static-int8"], 10, dla=False) == ["INT8"]
    assert builder_flags(info["fp32"], 10, dla=True) == ["FP16"], "DLA runs FP16/INT8 only"
    assert builder_flags(info["static-int8"], 10, dla=True) == ["INT8", "FP16"]
    for name in ("fp32", "fp16", "static-int8"):
        assert builder_flags(info[name], 11, dla=False) == []


def test_shape_ranges_defaults_profile_and_explicit() -> None:
    prep = {"max_length": 256}
    ranges = shape_ranges(TEXT_INPUTS, prep)
    assert ranges["input_ids"] == {"min": [1, 1], "opt": [1, 128], "max": [32, 256]}
    assert ranges["attention_mask"] == ranges["input_ids"]
    profiled = shape_ranges(TEXT_INPUTS, prep, batch=[1, 4, 8], seq_len=[16, 64, 128])
    assert profiled["attention_mask"] == {"min": [1, 16], "opt": [4, 64], "max": [8, 128]}
    # --shapes for one input sizes every input that shares its axes
    given = parse_shapes(["input_ids:1x8,2x32,4x64"])
    explicit = shape_ranges(TEXT_INPUTS, prep, explicit=given, batch=[1, 1, 99])
    assert explicit["attention_mask"] == {"min": [1, 8], "opt": [2, 32], "max": [4, 64]}
    static = shape_ranges(IMAGE_INPUTS, {}, explicit=parse_shapes(["pixel_values:1x3x96x96"]))
    assert static["pixel_values"] == {"min": [1, 3, 96, 96], "opt": [1, 3, 96, 96], "max": [1, 3, 96, 96]}
    image = shape_ranges(IMAGE_INPUTS, {}, batch=[1, 8, 64])
    assert image["pixel_values"]["max"] == [64, 3, 96, 96]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(explicit={"pixel_values": [(1, 3, 96, 96)] * 3}), "input 'pixel_values'; the model's inputs are"),
        (dict(explicit={"input_ids": [(1,), (1,), (1,)]}), "1 dims given, the input has 2"),
        (dict(explicit={"input_ids": [(4, 8), (2, 8), (8, 8)]}), "need 1 <= min <= opt <= max"),
        (
            dict(explicit={"input_ids": [(1, 8), (1, 8), (2, 8)], "attention_mask": [(1, 8), (1, 8), (4, 8)]}),
            "'batch' is shared by several inputs",
        ),
        (dict(seq_len=[1, 128, 512]), "sequence max 512 exceeds the model.s max length 256"),
    ],
)
def test_shape_errors_name_the_input_and_axis(kwargs, message) -> None:
    with pytest.raises(UsageError, match=message):
        shape_ranges(TEXT_INPUTS, {"max_length": 256}, **kwargs)


def test_fixed_axes_and_unknown_axes() -> None:
    with pytest.raises(UsageError, match="axis 2 is fixed at 96"):
        shape_ranges(IMAGE_INPUTS, {}, explicit={"pixel_values": [(1, 3, 64, 96)] * 3})
    odd = [{"name": "x", "shape": ["batch", "frames"]}]
    with pytest.raises(UsageError, match="dynamic axis 'frames'.*--shapes x:MIN,OPT,MAX"):
        shape_ranges(odd, {})
    for bad in ("input_ids", "input_ids:1x", "input_ids:1x2,3x4", ":1x2"):
        with pytest.raises(UsageError, match="expected NAME:DIMS"):
            parse_shapes([bad])


def _engine(tmp_path: Path, **compile_info) -> Artifact:
    info = {
        "target": "tensorrt",
        "tensorrt": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "hardware_compatibility": "none",
        "version_compatible": False,
        **compile_info,
    }
    manifest = {
        "kind": "engine",
        "compile": info,
        "parents": [{"path": "runs/int8"}],
        "profile": {"name": "jetson-orin-nano"},
    }
    return Artifact(tmp_path, manifest)


ORIN = {"name": "Orin", "compute_capability": "8.7"}
H100 = {"name": "NVIDIA H100", "compute_capability": "9.0"}
T4 = {"name": "Tesla T4", "compute_capability": "7.5"}


def test_engine_for_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    check_compatible(engine, "10.3.0", ORIN)
    check_compatible(engine, "10.3.0.26", ORIN)  # the build number does not matter
    rebuild = r"rebuild it here: edgeptm compile runs/int8 --target tensorrt --profile jetson-orin-nano --out DIR"
    with pytest.raises(BackendError, match=r"built with TensorRT 10\.3\.0, this is TensorRT 10\.4\.0.*" + rebuild):
        check_compatible(engine, "10.4.0", ORIN)
    with pytest.raises(BackendError, match=r"compute capability 8\.7 \(Orin\), this NVIDIA H100 is 9\.0.*" + rebuild):
        check_compatible(engine, "10.3.0", H100)


def test_version_and_hardware_compatible_engines(tmp_path: Path) -> None:
    portable = _engine(tmp_path, version_compatible=True, hardware_compatibility="ampere_plus")
    check_compatible(portable, "10.8.0", H100)  # later 10.x, another Ampere+ GPU
    with pytest.raises(BackendError, match=r"runs on 10.x >= 10.3.0\), this is 11.0.0"):
        check_compatible(portable, "11.0.0", H100)
    with pytest.raises(BackendError, match="this is 10.2.0"):
        check_compatible(portable, "10.2.0", H100)
    with pytest.raises(BackendError, match="Ampere and later GPUs, this Tesla T4 has compute capability 7.5"):
        check_compatible(portable, "10.3.0", T4)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the message for its absence cannot be seen")
def test_without_tensorrt_compile_says_what_to_install_and_writes_nothing(variants, tmp_path: Path) -> None:
    out = tmp_path / "engine"
    with pytest.raises(BackendError, match=r"TensorRT is not available here.*pip install 'edgeptm\[tensorrt\]'"):
        compile(variants["static-int8"], out, CompileOptions(target="tensorrt"))
    assert not out.exists()
    result = CliRunner().invoke(cli, ["compile", str(variants["fp16"].path), "--target", "tensorrt", "--out", str(out)])
    assert result.exit_code == 1 and "edgeptm[tensorrt]" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_request_errors_come_before_the_library_is_needed(variants, tmp_path: Path) -> None:
    out = tmp_path / "engine"
    cases = [
        (variants["dynamic"], CompileOptions(target="tensorrt"), "dynamic INT8"),
        (variants["static-uint8"], CompileOptions(target="tensorrt"), "--activations int8"),
        (variants["fp32"], CompileOptions(target="tensorrt", shapes=["input_ids:1x300"]), "sequence max 300 exceeds"),
        (variants["fp32"], CompileOptions(target="tensorrt", shapes=["pixels:1x3"]), "the model's inputs are"),
        (variants["fp32"], CompileOptions(target="tensorrt", dla_core=0, hardware_compatibility="ampere_plus"), "DLA"),
    ]
    for artifact, options, message in cases:
        with pytest.raises(UsageError, match=message):
            compile(artifact, out, options)
        assert not out.exists()


def test_tensorrt_takes_onnx_artifacts_not_checkpoints(tiny_checkpoint, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="takes an ONNX artifact"):
        compile(tiny_checkpoint, tmp_path / "e", CompileOptions(target="tensorrt"))


def test_profile_supplies_the_target_and_shapes(variants, tmp_path: Path) -> None:
    from edgeptm.profiles import load_profile

    profile = load_profile("jetson-orin-nano")
    options = CompileOptions(profile=profile)
    sources = options.shape_sources()
    assert sources["batch"] == profile.compile.batch and sources["seq_len"] == profile.compile.seq_len
    override = CompileOptions(profile=profile, max_batch=2).shape_sources()
    assert override["batch"] == (1, 1, 2)
    if not HAVE_TENSORRT:  # the profile's target is tensorrt: the same message as --target tensorrt
        with pytest.raises(BackendError, match="edgeptm\\[tensorrt\\]"):
            compile(variants["static-int8"], tmp_path / "e", CompileOptions(profile="jetson-orin-nano"))


needs_tensorrt = pytest.mark.skipif(
    not HAVE_TENSORRT or not _has_gpu(),
    reason="needs TensorRT and an NVIDIA GPU (TensorRT cannot be installed on these machines; "
    "run benchmarks/gpu_check.py where it can)",
)


@needs_tensorrt
@pytest.mark.parametrize("variant", ["fp32", "fp16", "static-int8"])
def test_real_engine_builds_validates_and_serves(variants, variant: str, tmp_path: Path) -> None:
    engine = compile(variants[variant], tmp_path / "engine", CompileOptions(target="tensorrt", max_batch=8))
    info = engine.manifest["compile"]
    assert info["tensorrt"] and info["compute_capability"] and info["shapes"]["input_ids"]["max"][0] == 8
    texts = ["a warm and funny film", "a dull, lifeless and far too long film"]
    with edgeptm.load(engine.path) as trt, edgeptm.load(variants[variant].path) as ort:
        assert trt.backend.name.startswith("tensorrt")
        assert (trt.logits(texts).argmax(-1) == ort.logits(texts).argmax(-1)).all()
        with pytest.raises(BackendError, match="outside the engine's optimization profile"):
            trt.backend.run(trt.encode(["x"] * 9))
    # the timing cache written by the first build is reused by the next
    again = compile(variants[variant], tmp_path / "again", CompileOptions(target="tensorrt", max_batch=8))
    assert again.manifest["compile"]["timing_cache"]["reused"]
    copy = engine_built_elsewhere(engine, tmp_path / "copy", tensorrt="9.0.0")
    with pytest.raises(BackendError, match="rebuild it here"):
        edgeptm.load(copy)
