"""Shared fixtures: a tiny BERT built in-process (seconds), and the stages run once on it.

The tiny model uses the real all-MiniLM-L6-v2 tokenizer (from the packaged weights) but a 2-layer,
32-wide random encoder, so every stage runs through its real code path in seconds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
REVIEWS = ASSETS / "reviews.csv"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# The suite's own trust store (engines it compiles are recorded there, never in the user's).
os.environ["EDGEPTM_TRUST_DIR"] = tempfile.mkdtemp(prefix="edgeptm-trust-")
atexit.register(shutil.rmtree, os.environ["EDGEPTM_TRUST_DIR"], True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    copy_minilm_tokenizer(directory)
    return directory


def copy_minilm_tokenizer(directory: Path, model_input_names: list[str] | None = None) -> None:
    """Give a tiny model directory the real MiniLM tokenizer (optionally without token_type_ids)."""
    import json

    from edgeptm.models.text import minilm_l6_spec

    source = Path(minilm_l6_spec().location)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    if model_input_names:
        config = json.loads((directory / "tokenizer_config.json").read_text())
        config["model_input_names"] = model_input_names
        (directory / "tokenizer_config.json").write_text(json.dumps(config))


def tiny_options(tiny_hf_dir: Path, **overrides):
    from edgeptm.finetuning import FinetuneOptions

    values = dict(
        model=f"hf:{tiny_hf_dir}",
        train=str(REVIEWS),
        epochs=8,
        batch_size=8,
        lr=3e-3,
        max_length=32,
        seed=0,
        progress=False,
        threads=1,
    )
    values.update(overrides)
    return FinetuneOptions(**values)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from edgeptm.finetuning import finetune

    return finetune(tiny_options(tiny_hf_dir), tmp_path_factory.mktemp("stages") / "ckpt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    from edgeptm.exporter import export

    return export(tiny_checkpoint, tmp_path_factory.mktemp("stages") / "onnx")


@pytest.fixture(scope="session")
def legacy_fused_onnx(tiny_onnx, tmp_path_factory: pytest.TempPathFactory):
    """An ONNX artifact as exports were before they were portable: one model.onnx holding ONNX
    Runtime's fused graph (com.microsoft Attention & co.), no derived file."""
    import json

    from edgeptm.artifacts import open_artifact, sha256_file
    from edgeptm.runtime.ort_backend import ORT_MODEL

    old = tmp_path_factory.mktemp("legacy") / "onnx"
    shutil.copytree(tiny_onnx.path, old)
    derived = old / tiny_onnx.manifest["files"][ORT_MODEL]["path"]
    (old / "model.onnx").unlink()
    derived.rename(old / "model.onnx")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("derived")
    manifest["files"].pop(ORT_MODEL)
    manifest["files"]["model"].update(sha256=sha256_file(old / "model.onnx"), size=(old / "model.onnx").stat().st_size)
    (old / "manifest.json").write_text(json.dumps(manifest))
    return open_artifact(old)


@pytest.fixture(scope="session")
def tiny_int8(tiny_onnx, tmp_path_factory: pytest.TempPathFactory):
    from edgeptm.quantization import quantize

    return quantize(tiny_onnx, tmp_path_factory.mktemp("stages") / "int8")


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_lm(directory: Path, family: str = "llama", tie: bool = True, seed: int = 0, **overrides: object) -> Path:
    """A 2-layer causal LM (grouped-query attention, 2 KV heads for 4 query heads) with a byte-level BPE
    tokenizer trained here on the test reviews, ChatML special tokens and a chat template."""
    import csv

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    texts = [row["text"] for row in csv.DictReader(open(REVIEWS, encoding="utf-8"))]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    extra = {"attention_bias": False} if family == "llama" else {}
    extra.update(overrides)
    config = AutoConfig.for_model(
        family,
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Prompt/completion JSONL from the test reviews: "Write a <label> review." -> "Here is a <label>
    review: <the review>" (the fixed opening gives the fine-tuned tiny model tokens it is sure of)."""
    import csv
    import json

    rows = list(csv.DictReader(open(REVIEWS, encoding="utf-8")))
    root = tmp_path_factory.mktemp("lm-data")
    paths = []
    for name, part in (("train", rows[: int(len(rows) * 0.8)]), ("val", rows[int(len(rows) * 0.8) :])):
        path = root / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in part:
                label = row["label"]
                completion = f"Here is a {label} review: {row['text']}"
                fh.write(json.dumps({"prompt": f"Write a {label} review.", "completion": completion}) + "\n")
        paths.append(path)
    return paths[0], paths[1]
