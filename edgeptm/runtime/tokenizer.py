"""Text preprocessing for serving: the artifact's ``tokenizer.json`` run by the `tokenizers` library.

An application that loads an ONNX artifact should not pay for importing transformers and torch
(~2 s and ~500 MB here) just to split text into ids. Fast tokenizers are fully described by
``tokenizer.json`` (normaliser, pre-tokeniser, model, special-token template); padding and
truncation follow ``tokenizer_config.json``. Artifacts without a ``tokenizer.json`` (slow
tokenizers) fall back to transformers. Tests check both give identical arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class JsonTokenizer:
    """A fast tokenizer from ``tokenizer.json``, producing int64 arrays for the model inputs."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token = pad or "[PAD]"
        pad_id = self.tokenizer.token_to_id(self.pad_token)
        self.pad_id = 0 if pad_id is None else pad_id
        self.pad_type_id = int(config.get("pad_token_type_id", 0))
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")

    def __call__(self, texts: Sequence[str], max_length: int, pad_to: int | None = None) -> dict[str, np.ndarray]:
        tok = self.tokenizer
        tok.enable_truncation(max_length=max_length, direction=self.truncation_side)
        tok.enable_padding(
            direction=self.padding_side,
            pad_id=self.pad_id,
            pad_type_id=self.pad_type_id,
            pad_token=self.pad_token,
            length=pad_to,
        )
        encodings = tok.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }


class TransformersTokenizer:
    """Fallback for tokenizers that ship no tokenizer.json (imports transformers)."""

    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(directory)

    def __call__(self, texts: Sequence[str], max_length: int, pad_to: int | None = None) -> dict[str, np.ndarray]:
        padding: Any = "max_length" if pad_to else "longest"
        encoded = self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=pad_to or max_length, return_tensors="np"
        )
        return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}


def load_text_tokenizer(directory: Path) -> JsonTokenizer | TransformersTokenizer:
    """The tokenizer saved in an artifact's directory. Its files come from the artifact (checksummed,
    but written by whoever built it): any failure to parse them is the artifact's, in one line."""
    from edgeptm.errors import ArtifactError

    if not directory.is_dir():
        raise ArtifactError(f"{directory}: the manifest's tokenizer directory is not in the artifact")
    try:
        if (directory / "tokenizer.json").is_file():
            return JsonTokenizer(directory)
        return TransformersTokenizer(directory)
    except Exception as exc:  # tokenizers' Rust errors, transformers' OSError/ValueError, bad JSON
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{directory}: cannot load the artifact's tokenizer ({detail})") from None
