"""The torch module behind every text checkpoint: encoder -> pooling -> dropout -> linear head.

Kept apart from ``text.py`` so that listing models or profiles never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgeptm.errors import ModelError
from edgeptm.models.encoders import POOLINGS, family_of


class TextClassifier(torch.nn.Module):
    """Encoder -> pooling -> dropout -> linear head. ``forward`` returns logits."""

    def __init__(self, encoder: Any, num_labels: int, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"pooling '{pooling}' is not one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)

    @classmethod
    def create(cls, encoder: Any, num_labels: int, pooling: str) -> "TextClassifier":
        model = cls(encoder, num_labels, pooling)
        # Small-normal init, as BERT does for its heads.
        model.head.weight.data.normal_(0.0, 0.02)
        model.head.bias.data.zero_()
        return model

    def pool(self, hidden: Any, attention_mask: Any) -> Any:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        return self.head(self.dropout(self.pool(hidden, attention_mask)))


def load_classifier(
    checkpoint_dir: Path, manifest: dict[str, Any], attn_implementation: str = "sdpa"
) -> TextClassifier:
    """Rebuild a fine-tuned classifier from a checkpoint artifact (weights via safetensors only)."""
    from transformers import AutoConfig, AutoModel

    from edgeptm.models.weights import load_artifact_weights

    model_info = manifest["model"]
    config = AutoConfig.from_pretrained(checkpoint_dir / model_info["encoder_config"])
    kwargs = family_of(config.model_type).load_kwargs
    encoder = AutoModel.from_config(config, attn_implementation=attn_implementation, **kwargs)
    model = TextClassifier(encoder, len(manifest["labels"]), model_info["pooling"])
    return load_artifact_weights(model, checkpoint_dir, manifest)
