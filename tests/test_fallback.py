"""quantize --fallback auto and the layer-wise diff under it, on the tiny fine-tuned BERT (real ONNX
Runtime quantizer and runtime; the real-model case is in test_integration_minilm.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeptm.errors import UsageError
from edgeptm.quantization import QuantizeOptions, quantize


def test_fallback_ends_within_budget_and_names_its_float_nodes(tiny_onnx, tmp_path: Path) -> None:
    q = quantize(
        tiny_onnx,
        tmp_path / "q",
        QuantizeOptions(mode="static-int8", op_types="all", fallback="auto", max_accuracy_drop=0.0),
    )
    record = q.manifest["quantization"]
    fallback = record["fallback"]
    assert record["op_types"] == "all the quantizer supports"
    assert q.metrics["accuracy_delta_points"] >= -1e-9, q.metrics
    assert fallback["accuracy"] == pytest.approx(q.metrics["accuracy"], abs=1e-6)
    graph = onnx.load(str(q.file("model"))).graph
    names = {n.name for n in graph.node}
    assert set(fallback["float_nodes"]) <= names
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    for node in graph.node:  # a node kept float reads no de-quantized tensor
        if node.name in fallback["float_nodes"]:
            assert not set(node.input) & dq, node.name
    assert fallback["steps"][0]["action"] == "every eligible node INT8"
    assert all(s["float_nodes"] <= fallback["eligible_nodes"] for s in fallback["steps"])
    assert fallback["latency_ms"]["fp32_graph"] > 0 and fallback["latency_ms"]["chosen"] > 0


def test_fallback_needs_a_budget_and_an_int8_mode(tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--max-accuracy-drop"):
        quantize(tiny_onnx, tmp_path / "a", QuantizeOptions(mode="static-int8", fallback="auto"))
    with pytest.raises(UsageError, match="static-int8 or dynamic-int8"):
        quantize(tiny_onnx, tmp_path / "b", QuantizeOptions(mode="fp16", fallback="auto", max_accuracy_drop=1))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _broken_copy(source, root: Path) -> tuple[Path, str]:
    """The artifact with one MatMul's weights negated (manifest resealed): the node it feeds is
    where the two graphs must part."""
    import json
    import shutil

    import numpy as np
    from onnx import numpy_helper

    from edgeptm.artifacts import sha256_file

    broken = root / "broken"
    shutil.copytree(source.path, broken)
    model = onnx.load(str(broken / "model.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits and uses[n.input[1]] == 1]
    target = matmuls[len(matmuls) // 2]  # one in the middle of the graph, not the first
    weight = inits[target.input[1]]
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight).astype(np.float32), weight.name))
    onnx.save(model, str(broken / "model.onnx"))
    manifest = json.loads((broken / "manifest.json").read_text())
    entry = manifest["files"]["model"]
    entry.update(sha256=sha256_file(broken / "model.onnx"), size=(broken / "model.onnx").stat().st_size)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    return broken, target.name


def test_diff_names_the_first_diverging_node_of_a_broken_graph(tiny_onnx, tmp_path: Path) -> None:
    from edgeptm.layerwise import diff_artifacts

    broken, node = _broken_copy(tiny_onnx, tmp_path)
    report = diff_artifacts(tiny_onnx.path, broken, samples=4)
    assert report.layerwise and len(report.tensors) > 50
    assert report.first is not None and report.first.node == node
    assert report.first.cosine < 0.5
    before = [d for d in report.tensors if d.index < report.first.index]
    assert before and all(d.cosine > 0.99999 for d in before)  # upstream of the edit: identical
    assert report.largest_steps(1)[0].node == node
    same = diff_artifacts(tiny_onnx.path, tiny_onnx.path, samples=2)
    assert same.first is None and all(d.max_abs == 0 for d in same.tensors)


def test_diff_command_prints_the_node_and_writes_json_and_html(tiny_onnx, tiny_int8, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from edgeptm.cli import cli

    broken, node = _broken_copy(tiny_onnx, tmp_path)
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        cli, ["diff", str(tiny_onnx.path), str(broken), "--samples", "3", "--json", str(out / "d.json"),
              "--html", str(out / "d.html")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"first divergence: node {node}" in result.output
    data = json.loads((out / "d.json").read_text())
    assert data["first_divergence"]["node"] == node and data["matched_tensors"] == len(data["tensors"])
    page = (out / "d.html").read_text()
    assert node in page and "<script" not in page
    # FP32 against its INT8 child: every tensor matched by name, the outputs compared
    result = CliRunner().invoke(cli, ["diff", str(tiny_onnx.path), str(tiny_int8.path), "--samples", "2"])
    assert result.exit_code == 0, result.output
    assert "tensors matched" in result.output and "outputs:" in result.output
    # a report may not land inside an artifact
    result = CliRunner().invoke(cli, ["diff", str(tiny_onnx.path), str(broken), "--json", str(broken / "x.json")])
    assert result.exit_code != 0 and not (broken / "x.json").exists()


def test_optimize_ends_with_a_chosen_artifact_and_a_row_per_candidate(tiny_checkpoint, tmp_path: Path) -> None:
    """Three ONNX Runtime recipes, one of which cannot build (its calibration file is not data):
    the failure is a row with its reason, the others are validated and timed, the fastest within
    the budget is chosen, and every other recipe is a row saying why it was not tried."""
    import json

    from click.testing import CliRunner

    from edgeptm.cli import cli

    bad = tmp_path / "calib.csv"
    bad.write_text("not,a\ncalibration,file\n")
    out = tmp_path / "opt"
    chosen = ["onnxruntime fp32", "onnxruntime static-int8", "onnxruntime dynamic-int8"]
    result = CliRunner().invoke(
        cli,
        ["optimize", str(tiny_checkpoint.path), "--profile", "cpu-x86-avx512", "--max-accuracy-drop", "1",
         "--out", str(out), "--duration", "0.5", "--calib", str(bad), "--recipes", ",".join(chosen)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "optimize-report.json").read_text())
    rows = {c["recipe"]: c for c in report["candidates"]}
    assert set(chosen) < set(rows)
    assert rows["onnxruntime static-int8"]["status"] == "failed" and rows["onnxruntime static-int8"]["reason"]
    for name in ("onnxruntime fp32", "onnxruntime dynamic-int8"):
        assert rows[name]["status"] in ("chosen", "ok") and rows[name]["p50_ms"] > 0 and rows[name]["accuracy"]
    assert report["chosen"] == rows[report["chosen_recipe"]]["artifact"]
    assert (Path(report["chosen"]) / "manifest.json").is_file()
    others = [c for name, c in rows.items() if name not in chosen]
    assert others and all(c["status"] == "skipped" and c["reason"] for c in others)
    for c in report["candidates"]:
        assert set(c) >= {"recipe", "status", "accuracy", "p50_ms", "reason"}
    page = (out / "optimize-report.html").read_text()
    assert "<svg" in page and "<script" not in page and report["chosen_recipe"] in page
    assert report["chosen_recipe"] in (out / "optimize-report.md").read_text()


def test_optimize_times_a_model_once_and_names_ties(tiny_onnx, tiny_int8, tmp_path: Path) -> None:
    """Two recipes that built byte-identical models (a fallback that kept every node INT8) are timed
    once: the later row names the earlier. A candidate within 5% of the chosen p50 is named a tie."""
    import shutil

    from edgeptm.optimize import Candidate, _choose, _mark_duplicates

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_onnx.path, a)
    shutil.copytree(tiny_onnx.path, b)
    rows = [
        Candidate("first", "onnxruntime", [], "fp32", a, status="ok"),
        Candidate("int8", "onnxruntime", [], "fp32", Path(tiny_int8.path), status="ok"),
        Candidate("again", "onnxruntime", [], "fp32", b, status="ok"),
    ]
    _mark_duplicates(rows)
    assert [c.status for c in rows] == ["ok", "ok", "duplicate"]
    assert "'first'" in rows[2].reason

    timed = [
        Candidate(name, "onnxruntime", [], "fp32", tmp_path / name, "ok", accuracy_delta_points=delta, p50_ms=p50)
        for name, delta, p50 in [("fast", -0.5, 2.00), ("close", 0.0, 2.08), ("slow", 0.0, 3.0), ("lossy", -3.0, 1.0)]
    ]
    chosen = _choose(timed, max_drop=1.0)
    assert chosen is not None and chosen.recipe == "fast"
    assert "'close'" in chosen.reason and "'slow'" not in chosen.reason
    assert "tie" in timed[1].reason and "tie" not in timed[2].reason
    assert timed[3].status == "rejected" and "0.50x" in timed[3].reason


def test_openvino_int8_fallback_drives_nncf_accuracy_control(tiny_onnx, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from edgeptm.compile import CompileOptions
    from edgeptm.compile import compile as compile_stage

    engine = compile_stage(
        tiny_onnx,
        tmp_path / "ov",
        CompileOptions(target="openvino", precision="int8", max_accuracy_drop=0.0, fallback="auto"),
    )
    calibration = engine.manifest["compile"]["calibration"]
    assert calibration["tool"].startswith("nncf.quantize_with_accuracy_control")
    assert calibration["accuracy_control"]["max_drop_points"] == 0.0
    assert engine.metrics["accuracy_delta_points"] >= 0.0
    with pytest.raises(UsageError, match="--fallback auto"):
        compile_stage(
            tiny_onnx, tmp_path / "fp32", CompileOptions(target="openvino", precision="fp32", fallback="auto")
        )
    with pytest.raises(UsageError, match="accuracy budget"):
        compile_stage(
            tiny_onnx, tmp_path / "nobudget", CompileOptions(target="openvino", precision="int8", fallback="auto")
        )
    assert not (tmp_path / "fp32").exists() and not (tmp_path / "nobudget").exists()


def test_diff_compares_an_openvino_ir_layer_by_layer(tiny_onnx, tmp_path: Path) -> None:
    """ONNX against the OpenVINO IR compiled from it (static shapes, so the feed is padded to the
    IR's one length): every tensor OpenVINO computes under an ONNX name is compared; FP32 diverges
    nowhere, NNCF's INT8 somewhere; the IR first gives the outputs only, and says why."""
    pytest.importorskip("openvino")
    import onnx

    from edgeptm.compile import CompileOptions
    from edgeptm.compile import compile as compile_stage
    from edgeptm.layerwise import diff_artifacts, float_tensors

    names = [i.name for i in onnx.load(str(tiny_onnx.file("model"))).graph.input]
    shapes = [f"{name}:1x16" for name in names]
    fp32, int8 = (
        compile_stage(tiny_onnx, tmp_path / p, CompileOptions(target="openvino", precision=p, shapes=shapes))
        for p in ("fp32", "int8")
    )
    assert fp32.manifest["compile"]["static_shapes"]

    same = diff_artifacts(tiny_onnx.path, fp32.path, samples=4)
    graph_tensors = float_tensors(onnx.load(str(tiny_onnx.file("model"))))
    assert same.layerwise and 10 <= len(same.tensors) <= len(graph_tensors)
    assert same.first is None and min(d.cosine for d in same.tensors) > 0.9999
    assert same.outputs and same.outputs[0].name in graph_tensors

    quantized = diff_artifacts(tiny_onnx.path, int8.path, samples=4, min_cosine=0.99999)
    assert quantized.layerwise and quantized.first is not None
    assert max(d.rel_err for d in quantized.tensors) > max(d.rel_err for d in same.tensors)

    reverse = diff_artifacts(fp32.path, tiny_onnx.path, samples=4)
    assert not reverse.layerwise and not reverse.tensors and "ONNX artifact first" in reverse.note

    # an IR someone cut short and resealed: one line naming the IR, a non-zero exit, no report written
    import json
    import shutil

    from click.testing import CliRunner

    from edgeptm.artifacts import sha256_file
    from edgeptm.cli import cli

    cut = tmp_path / "cut"
    shutil.copytree(fp32.path, cut)
    xml = cut / "model.xml"
    xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    manifest = json.loads((cut / "manifest.json").read_text())
    manifest["files"]["model"].update(sha256=sha256_file(xml), size=xml.stat().st_size)
    (cut / "manifest.json").write_text(json.dumps(manifest))
    report = tmp_path / "cut.json"
    result = CliRunner().invoke(cli, ["diff", str(tiny_onnx.path), str(cut), "--samples", "2", "--json", str(report)])
    assert result.exit_code != 0 and "cannot read this IR" in result.output and not report.exists()
    assert "Traceback" not in result.output
