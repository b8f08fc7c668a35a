"""Image classification: an image folder or a CSV of paths in, an NCHW float32 classifier out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact
from edgeptm.data.images import ImageDataset, ImagePreprocessing, check_images, load_batch, read_image_data
from edgeptm.data.images import read_image_list
from edgeptm.errors import DataError
from edgeptm.tasks.text import calibration_sample

INPUT_NAME = "pixel_values"


def _preprocessing(record: dict[str, Any]) -> ImagePreprocessing:
    return ImagePreprocessing.from_record({k: v for k, v in record.items() if k != "type"})


class ImageRecipe:
    """The image-specific half of fine-tuning: decoded, normalised batches with random flips."""

    def __init__(self, spec: Any, opts: Any, train: ImageDataset, val: ImageDataset, labels: list[str]) -> None:
        from edgeptm.models.vision import head_name

        self.opts, self.train, self.val, self.labels = opts, train, val, labels
        self.spec = spec
        self.prep = _preprocessing(spec.preprocessing())
        self.model = spec.build(len(labels))
        self.head = self.model.get_submodule(head_name(self.model))
        self._check_input_size()

    # BatchNorm in training mode needs two samples per batch (per process): a last batch of one
    # would fail with "Expected more than 1 value per channel" on small feature maps.
    min_batch = 2

    def _check_input_size(self) -> None:
        """One forward pass at the chosen size before any training: architectures with a fixed input
        size (ViTs) fail here, with advice, not after the data has been read."""
        import torch

        self.model.eval()
        try:
            with torch.inference_mode():
                self.model(torch.zeros(2, *self.prep.shape))
        except Exception as exc:  # shape assertions and errors from deep inside the library
            from edgeptm.errors import ModelError

            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ModelError(
                f"{self.spec.name}: does not run at {self.prep.crop}x{self.prep.crop} ({reason}); "
                "choose its native size with --image-size"
            ) from None

    def freeze(self) -> None:
        """Train the head only: every other parameter is fixed, BatchNorm statistics included."""
        self.model.requires_grad_(False)
        self.head.requires_grad_(True)

    def train_mode(self, frozen: bool) -> None:
        self.model.train()
        if frozen:  # a frozen backbone is a fixed feature extractor: running statistics stay put
            self.model.eval()
            self.head.train()

    def _pixels(self, data: ImageDataset, idx: list[int]) -> Any:
        import torch

        pixels, _, _ = load_batch([data.paths[i] for i in idx], self.prep, strict=True)
        return torch.from_numpy(pixels)

    def batch(self, idx: list[int]) -> list[Any]:
        import torch

        pixels = self._pixels(self.train, idx)
        if self.opts.augment:  # horizontal flips, drawn from torch's RNG (saved with resumable state)
            flip = torch.rand(len(idx)) < 0.5
            pixels[flip] = pixels[flip].flip(-1)
        return [pixels]

    def eval_logits(self, batch_size: int = 64) -> Any:
        import numpy as np
        import torch

        self.model.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(self.val), batch_size):
                idx = list(range(start, min(start + batch_size, len(self.val))))
                chunks.append(self.model(self._pixels(self.val, idx)).float().numpy())
        return np.concatenate(chunks)

    def write(self, writer: Any) -> dict[str, Any]:
        from edgeptm.models.vision import head_name

        self.val.to_jsonl(writer.add("val_data", "val.jsonl"))
        calibration_sample(self.train, self.opts.seed).to_jsonl(writer.add("calib_data", "calib.jsonl"))
        return {
            "task": "image-classification",
            "model": image_model_record(self.spec, self.model, head_name(self.model)),
            "io": image_io(self.prep, len(self.labels)),
            "preprocessing": self.spec.preprocessing(),
        }


def image_model_record(spec: Any, model: Any, head: str) -> dict[str, Any]:
    if not spec.pretrained:
        weights = "random init (--no-pretrained)"
    elif spec.weights is not None:
        weights = f"{spec.weights.name} (sha256 {_sha256(spec.weights)[:16]})"
    else:
        weights = f"{spec.library}'s pretrained weights"
    return {
        "source": spec.name,
        "architecture": "image-classifier",
        "library": spec.library,
        "arch": spec.arch,
        "head": head,
        "pretrained_weights": weights,
        "parameters": sum(p.numel() for p in model.parameters()),
        "export_atol": spec.export_atol,
    }


def image_io(prep: ImagePreprocessing, num_labels: int) -> dict[str, Any]:
    return {
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 3, prep.crop, prep.crop]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", num_labels]}],
    }


def _sha256(path: Path) -> str:
    from edgeptm.artifacts import sha256_file

    return sha256_file(path)


class ImageClassification:
    name = "image-classification"

    def read_data(self, path: str | Path, opts: Any) -> ImageDataset:
        data = read_image_data(path)
        return check_images(data, strict=getattr(opts, "strict", False))

    def val_data(self, artifact: Artifact) -> ImageDataset:
        data = read_image_list(artifact.file("val_data"), require_files=False)
        missing = [p for p in data.paths if not Path(p).is_file()]
        if missing:
            raise DataError(
                f"{artifact.path}: {len(missing)} validation image(s) it refers to are gone (first: {missing[0]}); "
                "pass labelled images with --val"
            )
        return data

    def calibration_inputs(self, artifact: Artifact) -> list[str] | None:
        if not artifact.has_file("calib_data"):
            return None
        listed = read_image_list(artifact.file("calib_data"), require_files=False).paths
        return [p for p in listed if Path(p).is_file()] or None

    def read_calibration(self, path: str | Path) -> list[str]:
        """Images for calibration: a folder (any layout, labels not needed) or a labelled list."""
        from edgeptm.data.images import IMAGE_SUFFIXES

        path = Path(path)
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise DataError(f"--calib {path}: no images in this folder")
            data = ImageDataset(files, [""] * len(files), str(path))
        else:
            data = read_image_data(path)
        return check_images(data).paths  # unreadable files are skipped (and counted in the log)

    def recipe(self, spec: Any, opts: Any, train: ImageDataset, val: ImageDataset, labels: list[str]) -> ImageRecipe:
        return ImageRecipe(spec, opts, train, val, labels)

    def torch_model(self, artifact: Artifact, for_export: bool = False) -> Any:
        from edgeptm.models.vision import load_image_classifier

        return load_image_classifier(artifact.path, artifact.manifest)

    def dynamic_axes(self, artifact: Artifact) -> dict[str, dict[int, str]]:
        return {INPUT_NAME: {0: "batch"}}

    def export_hint(self, message: str, artifact: Artifact) -> str:
        from edgeptm.models.vision import export_hint

        return export_hint(message, int(artifact.preprocessing.get("crop", 0)))

    def family(self, artifact: Artifact) -> Any:
        from edgeptm.models.vision import family_of

        return family_of(artifact.manifest["model"])


IMAGE_CLASSIFICATION = ImageClassification()
