"""Text classification: labelled sentences in, a tokenizer-carrying checkpoint out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.data.text import TextDataset, artifact_val_data, read_text_table
from edgeptm.errors import UsageError


class TextRecipe:
    """The text-specific half of fine-tuning: tokenized batches, evaluation, what the artifact holds."""

    def __init__(self, spec: Any, opts: Any, train: TextDataset, val: TextDataset, labels: list[str]) -> None:
        from edgeptm.models.text import input_names_for, position_limit

        self.opts, self.train, self.val, self.labels = opts, train, val, labels
        self.tokenizer = spec.load_tokenizer()
        self.names = input_names_for(self.tokenizer)
        self.model = spec.build(len(labels))
        limit = position_limit(self.model.encoder.config.to_dict(), getattr(self.tokenizer, "model_max_length", None))
        if limit is not None and opts.max_length > limit:
            raise UsageError(f"--max-length {opts.max_length} exceeds what {opts.model} takes ({limit} tokens)")
        self.encoded = self.tokenizer(train.texts, truncation=True, max_length=opts.max_length)

    min_batch = 1  # samples per process per step
    # Learning rates, chosen on small subsets (benchmarks/SMALL_DATA.md). The new head starts from
    # noise and must move far: 10x the body's rate. The body's top layer gets ``lr``, each layer
    # below it LAYER_DECAY times less (lower layers hold general language, the top the old task):
    # 800 rows x 2 epochs at a flat 5e-5 left the head barely trained and the model collapsed onto
    # the majority classes; 1e-4 at the top with decay trains in that budget without forgetting.
    DEFAULT_LR = 1e-4
    HEAD_LR_MULT = 10.0
    LAYER_DECAY = 0.9

    @property
    def head(self) -> Any:
        return self.model.head

    def layer_of(self, name: str) -> int:
        """Depth of a body parameter for layer-wise decay: 0 embeddings, i+1 transformer block i,
        the top (num_layers + 1) for the rest (pooler)."""
        import re

        if ".embeddings." in name:
            return 0
        match = re.search(r"\.layers?\.(\d+)\.", name)
        return int(match.group(1)) + 1 if match else self.num_layers + 1

    @property
    def num_layers(self) -> int:
        return int(getattr(self.model.encoder.config, "num_hidden_layers", 0) or 0)

    def inputs(self, data: TextDataset, idx: list[int]) -> list[Any]:
        """Model arguments for ``idx`` of ``data``, as evaluated (no augmentation)."""
        enc = self.tokenizer(
            [data.texts[i] for i in idx],
            padding="longest",
            truncation=True,
            max_length=self.opts.max_length,
            return_tensors="pt",
        )
        return [enc[name] for name in self.names]

    def freeze(self) -> None:
        """Train the head only, on the encoder's own pooling."""
        self.model.encoder.requires_grad_(False)

    def train_mode(self, frozen: bool) -> None:
        self.model.train()
        if frozen:
            self.model.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout

    def batch(self, idx: list[int]) -> list[Any]:
        features = [{name: self.encoded[name][i] for name in self.names} for i in idx]
        padded = self.tokenizer.pad(features, padding="longest", return_tensors="pt")
        return [padded[name] for name in self.names]

    def eval_logits(self, batch_size: int = 64) -> Any:
        import numpy as np
        import torch

        self.model.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(self.val), batch_size):
                idx = list(range(start, min(start + batch_size, len(self.val))))
                chunks.append(self.model(*self.inputs(self.val, idx)).float().numpy())
        return np.concatenate(chunks)

    def write(self, writer: Any) -> dict[str, Any]:
        """Save what the artifact needs besides the weights; returns the manifest's task parts."""
        model, labels = self.model, self.labels
        model.encoder.config.save_pretrained(writer.dir / "encoder")
        writer.add("encoder_config", "encoder/config.json")
        self.tokenizer.save_pretrained(writer.dir / "tokenizer")
        for file in sorted((writer.dir / "tokenizer").iterdir()):
            writer.add(f"tokenizer/{file.name}", f"tokenizer/{file.name}")
        self.val.to_jsonl(writer.add("val_data", "val.jsonl"))
        calibration_sample(self.train, self.opts.seed).to_jsonl(writer.add("calib_data", "calib.jsonl"))
        seq_axes = ["batch", "sequence"]
        return {
            "task": "text-classification",
            "model": {
                "source": self.opts.model,
                "architecture": "text-classifier",
                "encoder_type": model.encoder.config.model_type,
                "encoder_config": "encoder",
                "pooling": model.pooling,
                "hidden_size": model.encoder.config.hidden_size,
                "num_attention_heads": model.encoder.config.num_attention_heads,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            "io": {
                "inputs": [{"name": n, "dtype": "int64", "shape": seq_axes} for n in self.names],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", len(labels)]}],
            },
            "preprocessing": {
                "tokenizer": "tokenizer",
                "max_length": self.opts.max_length,
                "padding": "longest",
                "truncation": True,
            },
        }


CALIBRATION_SAMPLES = 512  # training inputs kept in the checkpoint for static INT8 calibration


def calibration_sample(train: Any, seed: int) -> Any:
    """A seeded sample of training inputs, carried by the checkpoint so that quantize can
    calibrate on *training* data (never on the validation data it then scores)."""
    import random

    order = list(range(len(train)))
    random.Random(seed + 1).shuffle(order)
    return train.subset(sorted(order[:CALIBRATION_SAMPLES]))


class TextClassification:
    name = "text-classification"

    def read_data(self, path: str | Path, opts: Any) -> TextDataset:
        return read_text_table(path, opts.text_column, opts.label_column)

    def val_data(self, artifact: Artifact) -> TextDataset:
        return artifact_val_data(artifact)

    def calibration_inputs(self, artifact: Artifact) -> list[str] | None:
        if not artifact.has_file("calib_data"):
            return None
        return read_text_table(artifact.file("calib_data"), "text", "label").texts

    def read_calibration(self, path: str | Path) -> list[str]:
        """Texts for calibration: the ``text`` column of a .csv/.tsv/.jsonl/.json file (labels not needed)."""
        import csv

        from edgeptm.data.text import _rows
        from edgeptm.errors import DataError

        path = Path(path)
        if not path.is_file():
            raise DataError(f"--calib {path}: expected a data file with a 'text' column")
        try:
            texts = [str(row["text"]) for _, row in _rows(path) if str(row.get("text") or "").strip()]
        except (UnicodeDecodeError, OSError, csv.Error) as exc:
            raise DataError(f"--calib {path}: cannot read ({type(exc).__name__}: {str(exc)[:120]})") from None
        if not texts:
            raise DataError(f"--calib {path}: no rows with a non-empty 'text' column")
        return texts

    def recipe(self, spec: Any, opts: Any, train: TextDataset, val: TextDataset, labels: list[str]) -> TextRecipe:
        return TextRecipe(spec, opts, train, val, labels)

    def torch_model(self, artifact: Artifact, for_export: bool = False) -> Any:
        from edgeptm.models.classifier import load_classifier

        # Eager attention for export: the graph shape ONNX Runtime's attention fusion recognises.
        return load_classifier(artifact.path, artifact.manifest, attn_implementation="eager" if for_export else "sdpa")

    def dynamic_axes(self, artifact: Artifact) -> dict[str, dict[int, str]]:
        return {i["name"]: {0: "batch", 1: "sequence"} for i in artifact.manifest["io"]["inputs"]}

    def export_hint(self, message: str, artifact: Artifact) -> str:
        """Advice for a known exporter failure ("" when there is none)."""
        return ""

    def family(self, artifact: Artifact) -> Any:
        from edgeptm.models.encoders import family_of

        return family_of(artifact.manifest["model"]["encoder_type"])


TEXT_CLASSIFICATION = TextClassification()
