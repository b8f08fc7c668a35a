from __future__ import annotations

from pathlib import Path

import pytest

from edgeptm.errors import ModelError
from edgeptm.models import list_sources, resolve_model
from edgeptm.models.text import hf_spec, input_names_for, minilm_l6_spec


def test_listing_marks_offline_sources():
    rows = {r["name"]: r for r in list_sources()}
    assert rows["minilm-l6"]["offline"] is True  # the package is part of the project's setup
    assert "hf:<dir-or-id>" in rows


def test_minilm_uses_its_own_mean_pooling():
    spec = resolve_model("minilm-l6")
    assert spec.pooling == "mean"  # read from the model's 1_Pooling/config.json
    assert (Path(spec.location) / "model.safetensors").is_file()


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'resnet9000'.*minilm-l6"):
        resolve_model("resnet9000")


def test_hf_local_directory(tiny_hf_dir: Path, tmp_path: Path):
    spec = resolve_model(f"hf:{tiny_hf_dir}")
    assert spec.pooling == "cls"  # a plain BERT directory: first-token pooling
    with pytest.raises(ModelError, match="no such directory"):
        hf_spec(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="no config.json"):
        hf_spec(str(tmp_path))


def test_hf_hub_id_offline_says_how_to_fix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="could not be loaded from the Hugging Face Hub.*pass hf:DIR"):
        resolve_model("hf:some-org/some-model-that-is-not-cached")


def test_input_names_follow_the_tokenizer():
    tokenizer = minilm_l6_spec().load_tokenizer()
    assert input_names_for(tokenizer) == ["input_ids", "attention_mask", "token_type_ids"]

    class NoTypes:
        model_input_names = ["input_ids", "attention_mask"]

    assert input_names_for(NoTypes()) == ["input_ids", "attention_mask"]
