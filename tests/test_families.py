"""hf: takes other encoder families: tiny DistilBERT and RoBERTa built in-process go the whole way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeptm
from edgeptm.errors import UsageError
from edgeptm.exporter import ExportOptions

from conftest import copy_minilm_tokenizer, tiny_options


def _tiny_dir(root: Path, family: str) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel

    torch.manual_seed(0)
    if family == "distilbert":
        model = DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=64))
    else:
        model = RobertaModel(
            RobertaConfig(
                vocab_size=30522,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=130,
                pad_token_id=0,
            )
        )
    directory = root / family
    model.save_pretrained(directory)
    copy_minilm_tokenizer(directory, ["input_ids", "attention_mask"])  # as these families' own tokenizers say
    return directory


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
def test_family_goes_the_whole_way(family: str, tmp_path: Path):
    directory = _tiny_dir(tmp_path, family)
    ckpt = edgeptm.finetune(tiny_options(directory, epochs=2), tmp_path / "ckpt")
    assert ckpt.manifest["model"]["encoder_type"] == family
    assert [i["name"] for i in ckpt.manifest["io"]["inputs"]] == ["input_ids", "attention_mask"]
    onnx = edgeptm.export(ckpt, tmp_path / "onnx")
    assert onnx.manifest["validation"]["label_agreement"] == 1.0
    int8 = edgeptm.quantize(onnx, tmp_path / "int8")
    texts = ["a warm and funny film", "a dull mess", "I loved it"]
    with edgeptm.load(ckpt.path) as a, edgeptm.load(onnx.path) as b, edgeptm.load(int8.path) as c:
        pa, pb, pc = a.predict(texts), b.predict(texts), c.predict(texts)
    assert [p.label for p in pa] == [p.label for p in pb]
    assert np.allclose([p.score for p in pa], [p.score for p in pb], atol=1e-4)
    assert len(pc) == 3
    if family == "roberta":  # 130 positions from pad_token_id + 1 = 1: 129 tokens fit, 130 do not
        with pytest.raises(UsageError, match=r"--max-length 130 exceeds what its encoder takes \(129 tokens\)"):
            edgeptm.export(ckpt, tmp_path / "x", ExportOptions(max_length=130))
        longest = edgeptm.export(ckpt, tmp_path / "onnx129", ExportOptions(max_length=129))
        assert longest.manifest["validation"]["full_length"]["tokens"] == 129
