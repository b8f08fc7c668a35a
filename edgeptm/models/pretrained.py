"""Use as-is: a registered model, exactly as it was pretrained, as a checkpoint artifact.

``edgeptm predict efficientnet-lite0 photo.jpg`` or ``edgeptm export minilm-l6 --out ...`` name a
model where an artifact directory is expected. The model is then materialised once into the cache
as an ordinary checkpoint artifact (weights as safetensors, manifest, checksums) and every stage
takes it from there:

- image classifiers keep their ImageNet-1k head, with the class names as labels;
- causal LMs (``smollm2-135m``) are written as they load: a generator with its tokenizer and
  chat template;
- text encoders become sentence-embedding models (task ``feature-extraction``): the encoder, its
  own pooling, and the L2 normalisation sentence-transformers applies, so exported and quantized
  graphs give the same vectors as the PyTorch model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact, ArtifactWriter, open_artifact
from edgeptm.errors import ArtifactError, ModelError

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1  # bump when what is materialised changes: older cache entries are rebuilt


def names_a_model(text: str) -> bool:
    """Whether ``text`` reads as a registered model name rather than a path."""
    from edgeptm.models import SOURCES

    return any(source.matches(text) for source in SOURCES) and not Path(text).exists()


def cache_root() -> Path:
    from edgeptm.data.demo import cache_dir

    return cache_dir() / "pretrained"


def pretrained_artifact(name: str) -> Artifact:
    """The cached as-is checkpoint for model ``name``, materialised on first use."""
    from edgeptm.models import resolve_model

    spec = resolve_model(name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    out = cache_root() / f"{slug}-{_cache_key(spec)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        _exclusive(lock)  # one process materialises; the others wait, then open its result
        if (out / "manifest.json").is_file():
            try:
                return open_artifact(out)
            except ArtifactError as exc:  # damaged or from another schema: rebuild it
                log.warning("%s: rebuilding the cached as-is artifact (%s)", name, exc)
        log.info("%s: materialising the pretrained model as-is into %s (once)", name, out)
        if spec.task == "image-classification":
            return _image_as_is(spec, out)
        if spec.task == "text-generation":
            return _causal_as_is(spec, out)
        return _text_as_is(spec, out)


def _cache_key(spec: Any) -> str:
    """Everything the materialised artifact depends on: the spec (weights location, preprocessing),
    the weights file as it is now, the libraries that build the model, and the artifact schema."""
    from edgeptm import __version__
    from edgeptm.artifacts import SCHEMA_VERSION
    from edgeptm.environment import package_versions

    parts = [repr(spec), __version__, str(SCHEMA_VERSION), str(LAYOUT_VERSION), json.dumps(package_versions())]
    for candidate in (getattr(spec, "weights", None), getattr(spec, "location", None)):
        path = Path(candidate) if candidate else None
        if path is not None and path.exists():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _exclusive(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock; the writer's staging still keeps files whole
        return
    fcntl.flock(handle, fcntl.LOCK_EX)


def _image_as_is(spec: Any, out: Path) -> Artifact:
    from safetensors.torch import save_file

    from edgeptm.models.vision import head_name, imagenet_labels, load_matching
    from edgeptm.tasks.image import image_io, image_model_record

    model = spec.architecture(1000)
    if not spec.pretrained:
        raise ModelError(f"{spec.name}: as-is use needs the pretrained weights")
    skipped = load_matching(model, spec.pretrained_state(), spec.name)
    if skipped:
        raise ModelError(
            f"{spec.name}: its pretrained head is not ImageNet-1k ({skipped[0]} differs); "
            "fine-tune it on your labels instead"
        )
    from edgeptm.data.images import ImagePreprocessing

    prep = ImagePreprocessing.from_record({k: v for k, v in spec.preprocessing().items() if k != "type"})
    with ArtifactWriter(out, force=True) as writer:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(writer.add("weights", "model.safetensors")))
        return writer.finish(
            "checkpoint",
            {
                "task": "image-classification",
                "labels": imagenet_labels(),
                "model": {**image_model_record(spec, model, head_name(model)), "as_is": True},
                "io": image_io(prep, 1000),
                "preprocessing": spec.preprocessing(),
                "precision": "fp32",
                "parents": [],
                "training": None,
                "metrics": {"accuracy": None, "note": "pretrained as-is (ImageNet-1k); no labelled data here"},
            },
        )


def _text_as_is(spec: Any, out: Path) -> Artifact:
    from safetensors.torch import save_file

    from edgeptm.models.embedder import SentenceEmbedder
    from edgeptm.models.text import input_names_for

    tokenizer = spec.load_tokenizer()
    names = input_names_for(tokenizer)
    model = SentenceEmbedder.pretrained(spec)
    config = model.encoder.config
    with ArtifactWriter(out, force=True) as writer:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(writer.add("weights", "model.safetensors")))
        config.save_pretrained(writer.dir / "encoder")
        writer.add("encoder_config", "encoder/config.json")
        tokenizer.save_pretrained(writer.dir / "tokenizer")
        for file in sorted((writer.dir / "tokenizer").iterdir()):
            writer.add(f"tokenizer/{file.name}", f"tokenizer/{file.name}")
        seq_axes = ["batch", "sequence"]
        return writer.finish(
            "checkpoint",
            {
                "task": "feature-extraction",
                "labels": [],
                "model": {
                    "source": spec.name,
                    "architecture": "sentence-embedder",
                    "encoder_type": config.model_type,
                    "encoder_config": "encoder",
                    "pooling": model.pooling,
                    "normalize": model.normalize,
                    "hidden_size": config.hidden_size,
                    "num_attention_heads": config.num_attention_heads,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "export_atol": 1e-4,
                    "as_is": True,
                },
                "io": {
                    "inputs": [{"name": n, "dtype": "int64", "shape": seq_axes} for n in names],
                    "outputs": [{"name": "embeddings", "dtype": "float32", "shape": ["batch", config.hidden_size]}],
                },
                "preprocessing": {
                    "tokenizer": "tokenizer",
                    "max_length": _max_seq_length(spec, tokenizer),
                    "padding": "longest",
                    "truncation": True,
                },
                "precision": "fp32",
                "parents": [],
                "training": None,
                "metrics": {"accuracy": None, "note": "pretrained as-is (sentence embeddings)"},
            },
        )


def _max_seq_length(spec: Any, tokenizer: Any) -> int:
    """sentence-transformers' own limit (256 for all-MiniLM-L6-v2: it was trained on <= 256
    tokens), else the tokenizer's, capped at 512."""
    import json

    config = Path(getattr(spec, "location", "")) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)


def _causal_as_is(spec: Any, out: Path) -> Artifact:
    from edgeptm.models.causal import checkpoint_manifest, model_record, save_lm

    model, tokenizer = spec.load_model(), spec.load_tokenizer()
    record = {**model_record(spec.name, model), "as_is": True}
    if spec.note:
        record["note"] = spec.note
    with ArtifactWriter(out, force=True) as writer:
        save_lm(model, tokenizer, writer)
        note = {"perplexity": None, "note": "pretrained as-is; no validation text here"}
        return writer.finish("checkpoint", checkpoint_manifest(tokenizer, model, record, None, note))
