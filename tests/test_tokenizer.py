"""The serving tokenizer (tokenizers + tokenizer.json) must give exactly what transformers gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeptm.data.text import read_text_table
from edgeptm.models.text import minilm_l6_spec
from edgeptm.runtime.tokenizer import JsonTokenizer, TransformersTokenizer

from conftest import REVIEWS

TEXTS = read_text_table(REVIEWS).texts + [
    "Ünïcödé, accents — and “quotes”: café naïve résumé 東京",
    "word " * 300,  # far past every max_length: truncation keeps [CLS] ... [SEP]
    "",
    "   leading and trailing spaces   ",
    "a",
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(minilm_l6_spec().location).save_pretrained(directory)  # as finetune does
    return JsonTokenizer(directory), TransformersTokenizer(directory)


@pytest.mark.parametrize("max_length, pad_to", [(64, None), (16, None), (128, 128), (32, 32)])
def test_identical_to_transformers(tokenizers, max_length: int, pad_to: int | None):
    fast, reference = tokenizers
    a, b = fast(TEXTS, max_length=max_length, pad_to=pad_to), reference(TEXTS, max_length=max_length, pad_to=pad_to)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert a[name].dtype == np.int64 and a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert a["input_ids"].shape[1] == (pad_to or max_length)  # the 300-word text fills max_length


def test_onnx_serving_imports_neither_torch_nor_transformers(tiny_onnx):
    code = (
        "import sys, edgeptm\n"
        f"p = edgeptm.load({str(tiny_onnx.path)!r})\n"
        "print(p.predict(['a warm and funny film'])[0].label)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    label, imported = out.stdout.strip().splitlines()
    assert label in ("negative", "positive")
    assert imported == "[]", f"serving an ONNX artifact imported {imported}"
