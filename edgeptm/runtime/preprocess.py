"""Preprocessors: raw inputs (texts, image files) -> the numpy feed a backend runs.

Built from the artifact's manifest (``preprocessing``), so the runtime applies exactly what
evaluation applied. Neither imports torch: an application that serves an ONNX artifact needs only
numpy, the tokenizer or Pillow, and the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeptm.artifacts import Artifact

# Stand-ins when an artifact carries no data (a model used as-is): varied in length and topic.
FALLBACK_TEXTS = (
    "A thoughtful, well acted and quietly funny film that stays with you after the credits.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "Quarterly revenue grew four percent, driven by subscriptions in Europe.",
    "Mix the flour and butter, then add cold water until the dough holds together.",
    "The patient reported mild headaches and was advised to drink more water.",
    "Is there a way to reset my password without the old email address?",
    "Rain is expected tonight.",
    "The committee postponed its decision on the new bridge until the spring session.",
)


class TextPreprocessor:
    """Tokenize to int64 arrays, padded to the longest text (or to exactly ``seq_len``)."""

    timed_compute = "model compute only: backend run on pre-tokenized int64 arrays padded to seq_len"
    timed_end_to_end = "end to end: tokenization (padded to seq_len) + backend run + postprocessing"

    def __init__(self, artifact: Artifact) -> None:
        from edgeptm.runtime.tokenizer import load_text_tokenizer

        self.artifact = artifact
        self.input_names = artifact.view.input_names
        self.max_length = int(artifact.preprocessing["max_length"])
        self.tokenizer = load_text_tokenizer(artifact.path / artifact.preprocessing["tokenizer"])

    def encode(
        self, texts: Sequence[str], seq_len: int | None = None, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """Token arrays padded to the longest text (cut at ``limit`` or the model's max length),
        or to exactly ``seq_len``."""
        if isinstance(texts, str):
            texts = [texts]
        longest = min(self.max_length, limit or self.max_length)
        encoded = self.tokenizer(list(texts), max_length=seq_len or longest, pad_to=seq_len)
        return {name: encoded[name] for name in self.input_names}

    def sample_inputs(self, n: int) -> list[str]:
        """Real sentences from the artifact's validation data, so tokens look like production's."""
        texts: list[str] = []
        if self.artifact.has_file("val_data"):
            from edgeptm.data.text import artifact_val_data

            texts = artifact_val_data(self.artifact).texts[:n]
        texts = texts or list(FALLBACK_TEXTS)
        return [texts[i % len(texts)] for i in range(n)]


class ImagePreprocessor:
    """Decode -> RGB -> resize shorter side -> centre crop -> scale, normalise -> NCHW float32.

    Inputs are image files (paths), PIL images, or HxWxC uint8 arrays (RGB).
    """

    timed_compute = "model compute only: backend run on a preprocessed float32 NCHW batch"
    timed_end_to_end = "end to end: image decode + resize/crop/normalise + backend run + postprocessing"

    def __init__(self, artifact: Artifact) -> None:
        from edgeptm.data.images import ImagePreprocessing

        self.artifact = artifact
        self.input_names = artifact.view.input_names
        self.dtype = np.dtype(artifact.view.inputs[0].dtype)  # float16 for --fp16-io graphs
        record = {k: v for k, v in artifact.preprocessing.items() if k != "type"}
        self.prep = ImagePreprocessing.from_record(record)

    def at_size(self, size: int) -> "ImagePreprocessor":
        """The same preprocessing cropping to ``size`` (resize scaled alike): for benchmarking a
        model whose graph takes other image sizes."""
        from edgeptm.data.images import ImagePreprocessing

        record = {k: v for k, v in self.artifact.preprocessing.items() if k != "type"}
        scale = record["resize"] / record["crop"]
        other = ImagePreprocessor(self.artifact)
        other.prep = ImagePreprocessing.from_record({**record, "crop": size, "resize": round(size * scale)})
        return other

    def array(self, image: Any) -> np.ndarray:
        from PIL import Image

        if isinstance(image, (str, Path)):
            return self.prep.load(image)
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return self.prep.array(image)

    def encode(self, images: Sequence[Any], seq_len: int | None = None) -> dict[str, np.ndarray]:
        if isinstance(images, (str, Path)):
            images = [images]
        batch = np.stack([self.array(image) for image in images]).astype(self.dtype, copy=False)
        return {self.input_names[0]: batch}

    def sample_inputs(self, n: int) -> list[Any]:
        """Images from the artifact's validation data; seeded synthetic ones without it (or when
        the recorded files are not on this machine)."""
        images: list[Any] = []
        if self.artifact.has_file("val_data"):
            from edgeptm.data.images import read_image_list

            listed = read_image_list(self.artifact.file("val_data"), require_files=False).paths
            images = [p for p in listed[:n] if Path(p).is_file()]
        if not images:
            images = synthetic_images(n, int(self.artifact.preprocessing["resize"]))
        return [images[i % len(images)] for i in range(n)]


def synthetic_images(n: int, size: int) -> list[np.ndarray]:
    """``n`` different seeded RGB images with structure (gradients, blocks, noise) and varied
    aspect ratios: stand-ins for checking a graph numerically when no real image is at hand."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        height, width = size, int(size * (0.75 + 0.5 * rng.random()))
        y, x = np.mgrid[0:height, 0:width] / max(height, width)
        waves = [np.sin(6.3 * (x * rng.random() + y * rng.random()) + rng.random() * 6.3) for _ in range(3)]
        base = np.stack(waves, -1)
        blocks = rng.random((4, 4, 3))[(y * 3.99).astype(int), (x * 3.99).astype(int)]
        pixels = 0.4 * (base + 1) / 2 + 0.4 * blocks + 0.2 * rng.random((height, width, 3))
        images.append((pixels * 255).clip(0, 255).astype(np.uint8))
    return images


PREPROCESSORS = {
    "text-classification": TextPreprocessor,
    "feature-extraction": TextPreprocessor,
    "image-classification": ImagePreprocessor,
}


def preprocessor_for(artifact: Artifact) -> Any:
    from edgeptm.errors import BackendError

    try:
        return PREPROCESSORS[artifact.task](artifact)
    except KeyError:
        raise BackendError(f"{artifact.path}: task '{artifact.task}' has no predictor in this edgeptm") from None
