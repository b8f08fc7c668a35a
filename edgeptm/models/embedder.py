"""The torch module behind an as-is text encoder: encoder -> its pooling -> L2 normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgeptm.errors import ModelError
from edgeptm.models.encoders import family_of


def sentence_transformers_normalizes(directory: Path) -> bool:
    """Whether a sentence-transformers directory ends in a Normalize module (modules.json)."""
    modules = directory / "modules.json"
    if not modules.is_file():
        return False
    return any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))


class SentenceEmbedder(torch.nn.Module):
    """Sentence vectors: mean (or first-token) pooling of the last hidden states, then L2 norm."""

    def __init__(self, encoder: Any, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    @classmethod
    def pretrained(cls, spec: Any, attn_implementation: str = "sdpa") -> "SentenceEmbedder":
        from transformers import AutoModel

        config = spec.load_config()
        try:
            encoder = AutoModel.from_pretrained(
                spec.location, attn_implementation=attn_implementation, **family_of(config.model_type).load_kwargs
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"{spec.name}: cannot load the encoder ({str(exc).splitlines()[0]})") from None
        location = Path(spec.location)
        normalize = sentence_transformers_normalizes(location) if location.is_dir() else False
        return cls(encoder, spec.pooling, normalize).eval()

    def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled


def load_embedder(checkpoint_dir: Path, manifest: dict[str, Any], attn_implementation: str = "sdpa") -> Any:
    from transformers import AutoConfig, AutoModel

    from edgeptm.models.weights import load_artifact_weights

    info = manifest["model"]
    config = AutoConfig.from_pretrained(checkpoint_dir / info["encoder_config"])
    encoder = AutoModel.from_config(
        config, attn_implementation=attn_implementation, **family_of(config.model_type).load_kwargs
    )
    model = SentenceEmbedder(encoder, info["pooling"], info["normalize"])
    return load_artifact_weights(model, checkpoint_dir, manifest)
