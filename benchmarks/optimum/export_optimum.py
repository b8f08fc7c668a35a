"""Hugging Face Optimum's recipe on the fine-tuned MiniLM classifier: export, O2, dynamic INT8.

Runs in Optimum's own venv (`benchmarks/optimum/setup.sh`), offline, on the Hugging Face
directory that `make_hf_dir.py` rebuilt from the edgeptm checkpoint. Every step is Optimum's
public API with its documented defaults:

1. export: `ORTModelForSequenceClassification.from_pretrained(dir, export=True,
   trust_remote_code=True)` -> `fp32/model.onnx` (Optimum's `main_export`: the legacy
   TorchScript exporter -- Optimum passes `dynamo=False` on torch >= 2.9 -- its `BertOnnxConfig`,
   opset and dynamic axes; the model loads with transformers' default attention);
2. optimize: `ORTOptimizer` with `AutoOptimizationConfig.O2()` (optimization_level 2,
   transformers-specific fusions, no GELU approximation, for CPU) -> `o2/model_optimized.onnx`;
3. quantize: `ORTQuantizer` with `AutoQuantizationConfig.avx512_vnni(is_static=False,
   per_channel=...)` on the O2 graph -> `o2-int8/` (per_channel=False, the config Optimum's
   documentation shows) and `o2-int8-pc/` (per_channel=True, as edgeptm quantizes). With
   onnxruntime 1.31 Optimum's quantizer stops on its own O2 graph (ONNX Runtime's quantizer asks
   for ``extra_options["DefaultTensorType"]``, which Optimum's QuantizationConfig cannot pass):
   the error is recorded and the step is redone with that one option supplied.

A diagnostic graph, `o2-noskip-int8-pc/`, is O2 with the SkipLayerNormalization fusion off and
the same per-channel INT8 (edgeptm's one deliberate difference from O2); `--no-diagnostic` skips it.

Each output directory also keeps Optimum's own `ort_config.json`. `export_record.json` records
the package versions, the exact configs, the operator counts of every graph and a numeric check
of each file against the PyTorch model on validation sentences.

    HF_HUB_OFFLINE=1 benchmarks/optimum/.venv/bin/python benchmarks/optimum/export_optimum.py \
        [--hf-dir benchmarks/optimum/out/hf-classifier] [--out benchmarks/optimum/out/optimum] \
        [--val runs/demo/checkpoint/val.jsonl]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
MAX_LENGTH = 64  # the checkpoint's tokenizer max length (its manifest's preprocessing.max_length)


class default_tensor_type_float:  # noqa: N801 (a context manager, used like a function)
    """Within it, Optimum's ORTQuantizer builds ONNX Runtime's ONNXQuantizer with
    ``extra_options["DefaultTensorType"] = FLOAT`` (the option ONNX Runtime's error names)."""

    def __enter__(self) -> None:
        import onnx
        import optimum.onnxruntime.quantization as oq

        self.module, self.original = oq, oq.ONNXQuantizer
        original = self.original

        class Patched(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs):
                kwargs.setdefault("extra_options", {})
                kwargs["extra_options"] = {**kwargs["extra_options"], "DefaultTensorType": onnx.TensorProto.FLOAT}
                super().__init__(*args, **kwargs)

        oq.ONNXQuantizer = Patched

    def __exit__(self, *exc: object) -> None:
        self.module.ONNXQuantizer = self.original


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def val_texts(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows[:n]]


def encode(hf_dir: Path, texts: list[str]) -> dict:
    """Token arrays the way edgeptm makes them: tokenizer.json, cut at 64, padded to the longest."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }


def check(onnx_path: Path, feed: dict, reference) -> dict:
    """Logits of the ONNX file (ONNX Runtime CPU, defaults) against the PyTorch model's."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    logits = session.run(None, {k: feed[k] for k in names})[0]
    return {
        "samples": int(len(logits)),
        "max_abs_logit_diff_vs_torch": float(np.abs(logits - reference).max()),
        "label_agreement_vs_torch": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
        "inputs": names,
        "outputs": [o.name for o in session.get_outputs()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf-dir", default=str(HERE / "out" / "hf-classifier"))
    parser.add_argument("--out", default=str(HERE / "out" / "optimum"))
    parser.add_argument("--val", default="runs/demo/checkpoint/val.jsonl", help="validation jsonl for the check")
    parser.add_argument("--check-samples", type=int, default=64)
    parser.add_argument("--no-diagnostic", action="store_true", help="skip the o2-noskip-int8-pc diagnostic graph")
    args = parser.parse_args()

    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoModelForSequenceClassification

    hf_dir, out = Path(args.hf_dir), Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    record: dict = {
        "hf_dir": str(hf_dir),
        "versions": {
            p: version(p)
            for p in ("optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime", "tokenizers")
        },
        "steps": {},
    }
    torch.set_num_threads(2)

    # 1. Optimum's export (main_export under the hood; validation is its job in the CLI, ours below).
    started = time.perf_counter()
    model = ORTModelForSequenceClassification.from_pretrained(hf_dir, export=True, trust_remote_code=True)
    model.save_pretrained(out / "fp32")
    record["steps"]["export"] = {
        "api": "ORTModelForSequenceClassification.from_pretrained(hf_dir, export=True, trust_remote_code=True)",
        "seconds": round(time.perf_counter() - started, 1),
        "file": "fp32/model.onnx",
    }

    # 2. O2.
    started = time.perf_counter()
    optimization = AutoOptimizationConfig.O2()
    ORTOptimizer.from_pretrained(model).optimize(save_dir=out / "o2", optimization_config=optimization)
    record["steps"]["optimize"] = {
        "api": "ORTOptimizer.from_pretrained(model).optimize(AutoOptimizationConfig.O2())",
        "config": optimization.__dict__,
        "fused_operators": ORTOptimizer.get_fused_operators(out / "o2" / "model_optimized.onnx"),
        "seconds": round(time.perf_counter() - started, 1),
        "file": "o2/model_optimized.onnx",
    }

    # 3. Dynamic INT8 for AVX-512 VNNI, per-tensor (Optimum's documented example) and per-channel.
    for name, per_channel in (("o2-int8", False), ("o2-int8-pc", True)):
        started = time.perf_counter()
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel)
        quantizer = ORTQuantizer.from_pretrained(out / "o2", file_name="model_optimized.onnx")
        workaround = None
        try:
            quantizer.quantize(save_dir=out / name, quantization_config=qconfig)
        except RuntimeError as exc:
            if "DefaultTensorType" not in str(exc):
                raise
            # ONNX Runtime's quantizer cannot type the outputs of the fused com.microsoft ops
            # (Attention, BiasGelu, ...) that O2 leaves, and Optimum's QuantizationConfig has no
            # way to pass the extra option ONNX Runtime asks for. Supply it, nothing else.
            workaround = {
                "error_without_it": str(exc).splitlines()[0][:300],
                "applied": "ONNXQuantizer extra_options['DefaultTensorType'] = onnx.TensorProto.FLOAT",
            }
            with default_tensor_type_float():
                quantizer.quantize(save_dir=out / name, quantization_config=qconfig)
        record["steps"][name] = {
            "api": "ORTQuantizer.quantize(AutoQuantizationConfig.avx512_vnni("
            f"is_static=False, per_channel={per_channel}))",
            "workaround": workaround,
            "config": {
                k: str(v) if not isinstance(v, (bool, int, float, list, type(None))) else v
                for k, v in qconfig.__dict__.items()
            },
            "seconds": round(time.perf_counter() - started, 1),
            "file": f"{name}/model_optimized_quantized.onnx",
        }

    # Diagnostic, not Optimum's recipe: O2 with SkipLayerNormalization fusion off, then the same
    # per-channel INT8 -- edgeptm's one deliberate difference (ONNX Runtime 1.31's CPU
    # SkipLayerNormalization kernel is slow at [1, 128, 384]), to attribute a latency gap.
    # compare.py also keeps the session from re-fusing it (disabled_optimizers).
    if not args.no_diagnostic:
        started = time.perf_counter()
        no_skip = OptimizationConfig(
            optimization_level=2,
            enable_transformers_specific_optimizations=True,
            disable_skip_layer_norm_fusion=True,
            disable_bias_skip_layer_norm_fusion=True,
        )
        ORTOptimizer.from_pretrained(model).optimize(save_dir=out / "o2-noskip", optimization_config=no_skip)
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer = ORTQuantizer.from_pretrained(out / "o2-noskip", file_name="model_optimized.onnx")
        with default_tensor_type_float():
            quantizer.quantize(save_dir=out / "o2-noskip-int8-pc", quantization_config=qconfig)
        record["steps"]["o2-noskip-int8-pc"] = {
            "api": "ORTOptimizer(OptimizationConfig(optimization_level=2, enable_transformers_specific_optimizations="
            "True, disable_skip_layer_norm_fusion=True, disable_bias_skip_layer_norm_fusion=True)) + ORTQuantizer("
            "avx512_vnni(is_static=False, per_channel=True)) with DefaultTensorType=FLOAT (diagnostic)",
            "seconds": round(time.perf_counter() - started, 1),
            "file": "o2-noskip-int8-pc/model_optimized_quantized.onnx",
        }

    # Numeric check of every file against the PyTorch model that Optimum exported.
    texts = val_texts(Path(args.val), args.check_samples)
    feed = encode(hf_dir, texts)
    reference_model = AutoModelForSequenceClassification.from_pretrained(hf_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        reference = reference_model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    record["attn_implementation_of_exported_model"] = getattr(model.config, "_attn_implementation", None) or getattr(
        reference_model.config, "_attn_implementation", None
    )
    for step in record["steps"].values():
        path = out / step["file"]
        step["size_mb"] = round(path.stat().st_size / 1e6, 2)
        step["op_counts"] = op_counts(path)
        step["check"] = check(path, feed, reference)
    (out / "export_record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    for name, step in record["steps"].items():
        c = step["check"]
        print(
            f"{name:12s} {step['file']:38s} {step['size_mb']:7.2f} MB  max|dlogit| vs torch "
            f"{c['max_abs_logit_diff_vs_torch']:.2e}  agreement {c['label_agreement_vs_torch']:.3f}  "
            f"({step['seconds']} s)"
        )
    print("O2 fused operators:", record["steps"]["optimize"]["fused_operators"])
    print(f"record: {out / 'export_record.json'}")


if __name__ == "__main__":
    main()
