"""The portable ONNX artifact: ``model`` holds standard ONNX operators only (every compile target
reads it), ONNX Runtime's fused graph is a derived file beside it that only ONNX Runtime runs, both
checked against PyTorch; static INT8 stays standard ONNX (Q/DQ), fp16 converts both graphs; old
single-graph artifacts still load; the trust checks know the derived role."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgeptm
from edgeptm.artifacts import Artifact, open_artifact
from edgeptm.cli import cli
from edgeptm.errors import ArtifactError
from edgeptm.quantization import QuantizeOptions, quantize
from edgeptm.runtime.ort_backend import ORT_MODEL, OrtBackend, graph_role
from edgeptm.runtime.predictor import predictor_for

TEXTS = ["a warm and funny film", "a dull, lifeless and far too long film", "fine", "not good at all"]


def domains_of(path: Path) -> dict[str, set[str]]:
    """Operator types by domain, straight from the protobuf (subgraphs included)."""
    import onnx

    found: dict[str, set[str]] = {}
    graphs = [onnx.load(str(path), load_external_data=False).graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            found.setdefault(node.domain or "ai.onnx", set()).add(node.op_type)
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else list(attribute.graphs))
    return found


def assert_standard(path: Path) -> None:
    domains = domains_of(path)
    assert set(domains) == {"ai.onnx"}, {d: sorted(ops) for d, ops in domains.items() if d != "ai.onnx"}


def session_ops(backend: OrtBackend, dump: Path) -> set[str]:
    """The operators of the graph an ONNX Runtime session actually runs (after its own rewrites)."""
    import onnx

    backend.close()
    return {f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onnx.load(str(dump)).graph.node}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_default_export_is_portable_and_onnxruntime_runs_the_derived_fused_graph(tiny_onnx, tmp_path: Path):
    m = tiny_onnx.manifest
    assert_standard(tiny_onnx.file("model"))
    assert m["export"]["operator_domains"] == ["ai.onnx"]
    fused = domains_of(tiny_onnx.file(ORT_MODEL))
    assert {"Attention", "BiasGelu"} <= fused["com.microsoft"]
    record = m["derived"][ORT_MODEL]
    assert record["from"] == "model" and record["for"] == "onnxruntime"
    assert record["input"]["sha256"] == m["files"]["model"]["sha256"]  # derived from this very model.onnx
    assert record["fused_operators"]["Attention"] == 2 and "Attention" in record["operators"]["com.microsoft"]
    assert "CPUExecutionProvider" in record["providers"]
    # Both graphs checked against PyTorch: the portable one at the top (existing keys), the fused beside it.
    v = m["validation"]
    assert v["max_abs_diff"] <= v["atol"] and v["label_agreement"] == 1.0
    derived = v[ORT_MODEL]
    assert derived["max_abs_diff"] <= v["atol"] and derived["label_agreement"] == 1.0 and derived["samples"] == 6
    assert derived["full_length"]["tokens"] == 32 and derived["path"] == "model.onnxruntime.onnx"
    assert m["metrics"]["graph"] == "model.onnxruntime.onnx"  # scored as load() serves it
    # What a default session runs: the fused graph; asked for the portable one, ONNX Runtime's own
    # rewrites do not make Attention of it (so the derived file is what carries the fusion).
    default = OrtBackend(tiny_onnx, save_optimized_to=str(tmp_path / "default.onnx"))
    assert default.graph == ORT_MODEL and default.settings["graph"] == "model.onnxruntime.onnx (ort-model)"
    assert "com.microsoft:Attention" in session_ops(default, tmp_path / "default.onnx")
    portable = OrtBackend(tiny_onnx, graph="model", save_optimized_to=str(tmp_path / "portable.onnx"))
    assert "com.microsoft:Attention" not in session_ops(portable, tmp_path / "portable.onnx")
    # TensorRT's provider builds standard ONNX itself: it is given the portable graph.
    assert graph_role(tiny_onnx, "TensorrtExecutionProvider") == "model"
    with edgeptm.load(tiny_onnx.path) as predictor:
        served = predictor.logits(TEXTS)
    with predictor_for(tiny_onnx, OrtBackend(tiny_onnx, graph="model")) as predictor:
        assert np.abs(predictor.logits(TEXTS) - served).max() < 1e-4


def test_no_optimize_writes_no_derived_file(tiny_checkpoint, tmp_path: Path):
    from edgeptm.exporter import ExportOptions, export

    plain = export(tiny_checkpoint, tmp_path / "plain", ExportOptions(optimize=False))
    assert not plain.has_file(ORT_MODEL) and "derived" not in plain.manifest
    assert ORT_MODEL not in plain.manifest["validation"]
    assert sorted(p.name for p in plain.path.glob("*.onnx")) == ["model.onnx"]
    with edgeptm.load(plain.path) as predictor:
        assert predictor.backend.graph == "model"


@pytest.mark.parametrize("activations", ["int8", "uint8"])
def test_static_int8_model_is_standard_qdq_onnx(tiny_onnx, tmp_path: Path, activations: str):
    """export -> quantize --mode static-int8 [--activations int8]: Q/DQ around standard ops, the
    form TensorRT's parser reads (symmetric INT8 zero points for --activations int8)."""
    import onnx
    from onnx import numpy_helper

    art = quantize(tiny_onnx, tmp_path / activations, QuantizeOptions(mode="static-int8", activations=activations))
    assert_standard(art.file("model"))
    ops = domains_of(art.file("model"))["ai.onnx"]
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    assert not art.has_file(ORT_MODEL) and "derived" not in art.manifest
    q = art.manifest["quantization"]
    assert q["source"] == {"role": "model", "sha256": tiny_onnx.manifest["files"]["model"]["sha256"]}
    assert q["float_activation_matmuls"] == 4  # Q x K^T and P x V of both layers stay float
    if activations == "int8":
        graph = onnx.load(str(art.file("model"))).graph
        constants = {t.name: t for t in graph.initializer}
        zero_points = [constants[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
        assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
        assert not any(numpy_helper.to_array(z).any() for z in zero_points)
    # ONNX Runtime runs the Q/DQ graph with its integer kernels.
    assert q["onnxruntime_cpu_kernels"], q
    with edgeptm.load(art.path) as predictor:
        assert predictor.backend.graph == "model" and predictor.logits(TEXTS).shape == (4, 2)


def test_dynamic_int8_keeps_onnxruntime_graph_beside_a_standard_model(tiny_onnx, tiny_int8, tmp_path: Path):
    """The text default: the portable graph quantized into model.onnx (standard MatMulInteger &
    co.), and the fused graph quantized as before (QAttention) beside it, which ONNX Runtime runs."""
    assert_standard(tiny_int8.file("model"))
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= domains_of(tiny_int8.file("model"))["ai.onnx"]
    assert "QAttention" in domains_of(tiny_int8.file(ORT_MODEL))["com.microsoft"]
    record = tiny_int8.manifest["derived"][ORT_MODEL]
    assert record["input"]["sha256"] == tiny_onnx.manifest["files"][ORT_MODEL]["sha256"]
    assert record["quantization"]["quantized_nodes"]["QAttention"] == 2
    backend = OrtBackend(tiny_int8, save_optimized_to=str(tmp_path / "session.onnx"))
    assert backend.graph == ORT_MODEL
    assert "com.microsoft:QAttention" in session_ops(backend, tmp_path / "session.onnx")
    fidelity = tiny_int8.manifest["fidelity"]
    assert fidelity[ORT_MODEL]["top1_agreement"] >= 0.8 and "accuracy_delta_points" in fidelity[ORT_MODEL]
    assert tiny_int8.metrics["graph"] == "model.onnxruntime.onnx" and "accuracy" in fidelity


def test_fp16_converts_both_graphs_and_guards_both(tiny_onnx, tmp_path: Path):
    import onnx

    art = quantize(tiny_onnx, tmp_path / "fp16", QuantizeOptions(mode="fp16"))
    assert_standard(art.file("model"))
    assert "Attention" in domains_of(art.file(ORT_MODEL))["com.microsoft"]
    for role in ("model", ORT_MODEL):
        initializers = onnx.load(str(art.file(role))).graph.initializer
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in initializers), role
    record = art.manifest["derived"][ORT_MODEL]
    parent = tiny_onnx.manifest["files"][ORT_MODEL]
    assert record["input"] == {"role": ORT_MODEL, "of": "parent", "path": parent["path"], "sha256": parent["sha256"]}
    assert record["fused_operators"] == tiny_onnx.manifest["derived"][ORT_MODEL]["fused_operators"]
    fidelity = art.manifest["fidelity"]
    assert fidelity["top1_agreement"] == 1.0 and fidelity[ORT_MODEL]["top1_agreement"] == 1.0
    # Each graph's accuracy beside its fidelity; 'metrics' is the graph ONNX Runtime serves.
    assert "accuracy_delta_points" in fidelity and fidelity[ORT_MODEL]["path"] == "model.onnxruntime.onnx"
    assert art.metrics["graph"] == "model.onnxruntime.onnx"
    assert art.metrics["accuracy"] == fidelity[ORT_MODEL]["accuracy"]
    with edgeptm.load(art.path) as predictor:
        assert predictor.backend.graph == ORT_MODEL


def test_default_export_compiles_for_openvino(tiny_checkpoint, tmp_path: Path):
    """export with every default, then compile --target openvino: no --no-optimize needed."""
    pytest.importorskip("openvino")
    result = invoke("export", tiny_checkpoint.path, "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.output
    assert (
        "model.onnx: ai.onnx operators" in result.output
        and "onnxruntime graph: model.onnxruntime.onnx" in result.output
    )
    result = invoke("compile", tmp_path / "onnx", "--target", "openvino", "--out", tmp_path / "ir")
    assert result.exit_code == 0, result.output
    ir = open_artifact(tmp_path / "ir")
    assert ir.manifest["compile"]["target"] == "openvino" and ir.manifest["precision"] == "fp32"
    with edgeptm.load(ir.path) as engine, edgeptm.load(tmp_path / "onnx") as ort:
        assert engine.backend.name.startswith("openvino")
        assert np.abs(engine.logits(TEXTS) - ort.logits(TEXTS)).max() < 1e-3


def test_verify_accepts_the_derived_role_and_refuses_it_tampered_or_unregistered(tiny_onnx, tmp_path: Path):
    result = invoke("verify", tiny_onnx.path)
    assert result.exit_code == 0 and tiny_onnx.digest in result.output, result.output
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx.path, copy)
    with open(copy / "model.onnxruntime.onnx", "r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    with pytest.raises(
        ArtifactError, match=r"'model\.onnxruntime\.onnx' \(ort-model\) does not match its manifest checksum"
    ):
        open_artifact(copy)
    # A derived record must name files the manifest registers (and checksums).
    manifest = json.loads((tiny_onnx.path / "manifest.json").read_text())
    manifest["files"].pop(ORT_MODEL)
    shutil.rmtree(copy)
    shutil.copytree(tiny_onnx.path, copy)
    (copy / "model.onnxruntime.onnx").unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"'derived\.ort-model' names the file role 'ort-model', which 'files'"):
        open_artifact(copy)


def test_a_single_graph_artifact_from_before_still_loads_and_quantizes(legacy_fused_onnx, tmp_path: Path):
    """An artifact made before the derived file: one model.onnx holding the fused graph, no 'derived'."""
    artifact = legacy_fused_onnx
    old = artifact.path
    with edgeptm.load(old) as predictor:
        assert predictor.backend.graph == "model" and predictor.logits(TEXTS).shape == (4, 2)
    if importlib.util.find_spec("openvino") is not None:  # its fused graph is still refused, with advice
        result = invoke("compile", old, "--target", "openvino", "--out", tmp_path / "ir")
        assert result.exit_code != 0 and "ONNX Runtime's own fused operators" in result.output, result.output
    int8 = quantize(artifact, tmp_path / "int8")
    assert int8.manifest["quantization"]["quantized_nodes"] and not int8.has_file(ORT_MODEL)
    assert isinstance(int8, Artifact) and open_artifact(int8.path).manifest == int8.manifest
