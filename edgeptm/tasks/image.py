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
    # Chosen on small subsets (benchmarks/SMALL_DATA.md): the pretrained body moves gently (a flat
    # 1e-3 over-drove it: 150 images, train loss 0.01, validation 0.64 -> 0.86 in 3 epochs), the
    # new head 10x faster. No layer-wise decay: a CNN body is one group.
    DEFAULT_LR = 1e-4
    HEAD_LR_MULT = 10.0
    LAYER_DECAY = 1.0
    # Below this many training images BatchNorm keeps its pretrained running statistics: batches of
    # a few dozen images from a small set estimate them worse than ImageNet did, and the estimate
    # drifts between train and eval. Its scale and shift still train.
    SMALL_SET = 2000
    num_layers = 0

    @property
    def frozen_statistics(self) -> bool:
        # Only pretrained statistics are worth keeping: a randomly initialised body's are 0/1
        # placeholders, and fixing them leaves its activations unnormalised (--no-pretrained).
        return bool(self.spec.pretrained) and len(self.train) < self.SMALL_SET

    def layer_of(self, name: str) -> int:
        return 0

    def inputs(self, data: ImageDataset, idx: list[int]) -> list[Any]:
        """Model arguments for ``idx`` of ``data``, as evaluated (no augmentation)."""
        return [self._pixels(data, idx)]

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
        import torch

        self.model.train()
        if frozen:  # a frozen backbone is a fixed feature extractor: running statistics stay put
            self.model.eval()
            self.head.train()
        elif self.frozen_statistics:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _pixels(self, data: ImageDataset, idx: list[int]) -> Any:
        import torch

        pixels, _, _ = load_batch([data.paths[i] for i in idx], self.prep, strict=True)
        return torch.from_numpy(pixels)

    def batch(self, idx: list[int]) -> list[Any]:
        pixels = self._pixels(self.train, idx)
        if self.opts.augment:
            pixels = self._augment(pixels)
        return [pixels]

    @property
    def colour(self) -> bool:
        """Whether the training images have colour (greyscale ones are replicated to 3 equal
        channels): colour jitter only where there is colour to jitter."""
        if not hasattr(self, "_colour"):
            import torch

            sample = self._pixels(self.train, list(range(min(16, len(self.train)))))
            raw = sample * torch.tensor(self.prep.std).view(1, 3, 1, 1) + torch.tensor(self.prep.mean).view(1, 3, 1, 1)
            spread = (raw.max(dim=1).values - raw.min(dim=1).values).max()
            self._colour = bool(spread > 1.5 / 255)  # equal channels, to 8-bit rounding: greyscale
        return self._colour

    def _augment(self, pixels: Any) -> Any:
        """Random resized crops (at least 60% of the image: small sets gain from views that differ,
        and a smaller crop often cuts the object away), horizontal flips, and on colour images
        brightness/contrast/saturation jitter of up to 20%. Every draw comes from torch's RNG, which
        the resumable state saves, so an interrupted run resumes with the same augmentations."""
        import torch

        n, _, height, width = pixels.shape
        mean = torch.tensor(self.prep.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.prep.std).view(1, 3, 1, 1)
        out = torch.empty_like(pixels)
        for i in range(n):
            area = float(torch.empty(1).uniform_(0.6, 1.0))
            aspect = float(torch.exp(torch.empty(1).uniform_(-0.2877, 0.2877)))  # 3/4 .. 4/3
            h = min(height, max(8, round((area * height * width / aspect) ** 0.5)))
            w = min(width, max(8, round((area * height * width * aspect) ** 0.5)))
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            crop = pixels[i : i + 1, :, top : top + h, left : left + w]
            out[i : i + 1] = torch.nn.functional.interpolate(
                crop, size=(height, width), mode="bilinear", align_corners=False, antialias=True
            )
        flip = torch.rand(n) < 0.5
        out[flip] = out[flip].flip(-1)
        if self.colour:
            raw = out * std + mean  # back to [0, 1] pixels, jittered there, normalised again
            brightness = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2)
            contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2)
            saturation = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2)
            raw = raw * brightness
            grey = 0.299 * raw[:, 0:1] + 0.587 * raw[:, 1:2] + 0.114 * raw[:, 2:3]
            raw = (raw - grey.mean(dim=(2, 3), keepdim=True)) * contrast + grey.mean(dim=(2, 3), keepdim=True)
            grey = 0.299 * raw[:, 0:1] + 0.587 * raw[:, 1:2] + 0.114 * raw[:, 2:3]
            raw = (raw - grey) * saturation + grey
            out = (raw.clamp(0, 1) - mean) / std
        return out

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
