from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeptm
from edgeptm.artifacts import open_artifact
from edgeptm.errors import AccuracyError, ExportError, UsageError
from edgeptm.exporter import ExportOptions, export
from edgeptm.quantization import QuantizeOptions, quantize


def test_onnx_artifact_is_validated(tiny_onnx, tiny_checkpoint):
    m = tiny_onnx.manifest
    assert m["kind"] == "onnx" and m["precision"] == "fp32"
    assert m["parents"][0]["manifest_sha256"] == tiny_checkpoint.manifest_sha256
    v = m["validation"]
    assert v["max_abs_diff"] <= v["atol"] and v["label_agreement"] == 1.0 and v["samples"] == 6
    assert m["export"]["opset"] == 17 and m["export"]["dynamic_axes"]["input_ids"] == ["batch", "sequence"]
    fused = m["export"]["optimization"]["fused_operators"]
    assert fused.get("Attention") == 2, f"ORT attention fusion expected on both layers, got {fused}"
    assert m["metrics"]["accuracy"] == pytest.approx(tiny_checkpoint.metrics["accuracy"])


def test_runtime_hints_travel_and_apply(tiny_onnx, tiny_int8, tmp_path: Path):
    """SkipLayerNorm stays unfused (slow on ORT CPU): in the exported graph and in the session."""
    import onnx

    from edgeptm.runtime.ort_backend import OrtBackend

    for artifact in (tiny_onnx, tiny_int8):
        assert artifact.manifest["runtime"]["onnxruntime"]["disabled_optimizers"] == ["SkipLayerNormFusion"]
        dumped = tmp_path / f"{artifact.path.name}.onnx"
        OrtBackend(artifact, save_optimized_to=str(dumped)).close()
        ops = {n.op_type for n in onnx.load(str(dumped)).graph.node}
        assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops, ops
    assert "SkipLayerNormalization" not in tiny_onnx.manifest["export"]["optimization"]["fused_operators"]


def test_dynamic_axes_really_dynamic(tiny_onnx):
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx.file("model")), providers=["CPUExecutionProvider"])
    for batch, seq in ((1, 5), (3, 17), (2, 32)):
        feed = {i.name: np.ones((batch, seq), np.int64) for i in session.get_inputs()}
        assert session.run(None, feed)[0].shape == (batch, 2)


def test_checkpoint_and_onnx_predict_the_same(tiny_checkpoint, tiny_onnx, tiny_int8):
    texts = ["a warm and funny film", "a dull mess", "the acting is wooden", "I loved it"]
    with edgeptm.load(tiny_checkpoint.path) as torch_p, edgeptm.load(tiny_onnx.path) as onnx_p:
        a, b = torch_p.predict(texts), onnx_p.predict(texts)
        assert torch_p.backend.name == "torch-eager" and onnx_p.backend.name == "onnxruntime-cpu"
    assert [p.label for p in a] == [p.label for p in b]
    assert np.allclose([p.score for p in a], [p.score for p in b], atol=1e-4)
    with edgeptm.load(tiny_int8.path) as int8_p:
        assert all(0.5 <= p.score <= 1.0 and p.label in ("negative", "positive") for p in int8_p.predict(texts))


def test_no_optimize_keeps_plain_graph(tiny_checkpoint, tmp_path: Path):
    art = export(tiny_checkpoint, tmp_path / "plain", ExportOptions(optimize=False, opset=14))
    assert art.manifest["export"]["optimization"]["applied"] is False
    assert art.manifest["export"]["opset"] == 14
    import onnx

    ops = {n.op_type for n in onnx.load(str(art.file("model"))).graph.node}
    assert "Attention" not in ops and "MatMul" in ops


def test_profile_sets_opset_and_explicit_wins(tiny_checkpoint, tmp_path: Path):
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nexport:\n  opset: 15\n  optimize: false\n")
    a = export(tiny_checkpoint, tmp_path / "a", ExportOptions(profile=str(profile)))
    assert a.manifest["export"]["opset"] == 15 and a.manifest["profile"]["name"] == "p"
    b = export(tiny_checkpoint, tmp_path / "b", ExportOptions(profile=str(profile), opset=16))
    assert b.manifest["export"]["opset"] == 16


def test_tolerance_violation_names_output_and_writes_nothing(tiny_checkpoint, tmp_path: Path):
    message = r"output 'logits' \(opset 17\): max abs difference .* exceeds the tolerance 1e-12"
    with pytest.raises(ExportError, match=message):
        export(tiny_checkpoint, tmp_path / "x", ExportOptions(atol=1e-12))
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_export_serves_longer_texts_than_fine_tuned(tiny_checkpoint, tmp_path: Path):
    """Fine-tuned at 32 tokens, served at up to 96 (the tiny BERT has 128 positions): the ONNX model
    matches PyTorch on a text longer than the checkpoint's cut, and 129 is refused."""
    from edgeptm.exporter import compare_with_torch
    from edgeptm.tasks import get_task

    art = export(tiny_checkpoint, tmp_path / "long", ExportOptions(max_length=96))
    assert art.preprocessing["max_length"] == 96 and tiny_checkpoint.preprocessing["max_length"] == 32
    assert art.manifest["export"]["max_length"] == {"served": 96, "checkpoint": 32}
    full = art.manifest["validation"]["full_length"]  # export itself compared a text filling all 96 positions
    assert full["tokens"] == 96 and full["max_abs_diff"] <= art.manifest["validation"]["atol"]
    long_text = " ".join(["a warm, funny and beautifully shot film"] * 20)
    model = get_task(art.task).torch_model(tiny_checkpoint)
    with edgeptm.load(art.path) as predictor:
        assert predictor.encode([long_text])["input_ids"].shape == (1, 96)
        check = compare_with_torch(model, predictor, [long_text, "short"])
    assert check["max_abs_diff"] < 1e-4, check
    with pytest.raises(UsageError, match=r"--max-length 129 exceeds what its encoder takes \(128 tokens\)"):
        export(tiny_checkpoint, tmp_path / "x", ExportOptions(max_length=129))
    assert not (tmp_path / "x").exists()


def test_export_takes_only_checkpoints(tiny_onnx, tmp_path: Path):
    with pytest.raises(UsageError, match="takes a checkpoint"):
        export(tiny_onnx, tmp_path / "x")


def test_int8_artifact(tiny_int8, tiny_onnx):
    m = tiny_int8.manifest
    assert m["precision"] == "int8-dynamic" and m["quantization"]["mode"] == "dynamic-int8"
    assert m["quantization"]["quantized_nodes"], "no node was quantized"
    assert m["metrics"]["parent_accuracy"] == pytest.approx(tiny_onnx.metrics["accuracy"])
    assert m["metrics"]["accuracy_delta_points"] == pytest.approx(
        (m["metrics"]["accuracy"] - m["metrics"]["parent_accuracy"]) * 100, abs=1e-3
    )
    assert tiny_int8.size_bytes(["model"]) < tiny_onnx.size_bytes(["model"])
    with pytest.raises(UsageError, match="fp32 ONNX artifact"):
        quantize(tiny_int8, Path(tiny_int8.path).parent / "again")


def test_accuracy_guard_threshold():
    from edgeptm.quantization import check_accuracy_drop

    assert check_accuracy_drop("m", 0.80, 0.79, 100, 1.0) == pytest.approx(-1.0)
    assert check_accuracy_drop("m", 0.80, 0.85, 100, 0.0) == pytest.approx(5.0)
    assert check_accuracy_drop("m", 0.80, 0.10, 100, None) == pytest.approx(-70.0)
    with pytest.raises(AccuracyError, match=r"lost 1\.50 accuracy points \(0\.8000 -> 0\.7850 on 200 samples\).*: try"):
        check_accuracy_drop("m", 0.80, 0.785, 200, 1.0, "try this")


def test_quantize_val_with_unseen_label(tiny_onnx, tmp_path: Path):
    from edgeptm.errors import DataError

    val = tmp_path / "v.csv"
    val.write_text("text,label\ngood,positive\nmeh,neutral\n")
    with pytest.raises(DataError, match="'neutral' never appears"):
        quantize(tiny_onnx, tmp_path / "x", QuantizeOptions(val=str(val)))
    assert not (tmp_path / "x").exists()


def test_quantized_model_reopens_and_verifies(tiny_int8):
    again = open_artifact(tiny_int8.path)
    assert again.manifest == tiny_int8.manifest


def test_text_static_int8_quantizes_only_the_family_ops(tiny_onnx, tiny_checkpoint, tmp_path: Path):
    """Static QDQ on a transformer: MatMul/Gemm only (the family's choice), calibrated on the
    training sample the checkpoint carries; accuracy and fidelity recorded like every mode."""
    assert tiny_checkpoint.has_file("calib_data")
    int8 = quantize(tiny_onnx, tmp_path / "sq", QuantizeOptions(mode="static-int8", calib_method="percentile"))
    q = int8.manifest["quantization"]
    assert q["op_types"] == ["MatMul", "Gemm"] and q["calibration"]["method"] == "percentile"
    assert q["calibration"]["samples"] > 0 and "training sample" in q["calibration"]["source"]
    assert set(q["ops_with_int8_weights"]) == {"MatMul", "Gemm"}  # the fused Attention keeps float weights
    assert "accuracy_delta_points" in int8.metrics and int8.manifest["fidelity"]["mean_cosine"] > 0.9


def test_fp16_keeps_float32_io_unless_asked(tiny_onnx, tmp_path: Path):
    import onnx

    for fp16_io, dtype in ((False, onnx.TensorProto.FLOAT), (True, onnx.TensorProto.FLOAT16)):
        art = quantize(tiny_onnx, tmp_path / f"fp16-{fp16_io}", QuantizeOptions(mode="fp16", fp16_io=fp16_io))
        graph = onnx.load(str(art.file("model"))).graph
        assert graph.output[0].type.tensor_type.elem_type == dtype
        assert art.manifest["precision"] == "fp16" and "accuracy_delta_points" in art.metrics
        assert art.size_bytes(["model"]) < 0.6 * tiny_onnx.size_bytes(["model"])
