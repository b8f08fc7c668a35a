"""Labelled images: read (folder, CSV/TSV, JSONL), check, and preprocess to model input.

An image dataset is a list of file paths and string labels, like ``TextDataset`` for text, so the
same ``seeded_split`` works on both. ``ImagePreprocessing`` is the one function from a file to a
float32 array: training evaluation and the runtime predictor both call it, so a deployed model sees
exactly the pixels it was validated on. Its ``record()`` goes into the artifact manifest.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeptm.data.text import labelled_rows, reading
from edgeptm.data.labelled import Labelled
from edgeptm.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_CHANNEL_ORDERS = ("RGB", "BGR")
_LAYOUTS = ("NCHW", "NHWC")


@dataclass
class ImageDataset(Labelled):
    paths: list[str]
    labels: list[str]
    source: str = ""

    INPUTS = "paths"
    NOUN = "images"

    def to_jsonl(self, path: str | Path) -> None:
        """One ``{"path": absolute path, "label": ...}`` object per line (readable by ``read_image_list``)."""
        with open(path, "w", encoding="utf-8") as fh:
            for image, label in zip(self.paths, self.labels):
                fh.write(json.dumps({"path": os.path.abspath(image), "label": label}, ensure_ascii=False) + "\n")

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "ImageDataset":
        return read_image_list(path)


def read_image_list(
    path: str | Path, path_column: str = "path", label_column: str = "label", require_files: bool = True
) -> ImageDataset:
    """Read a CSV/TSV/JSONL list of images; relative paths are relative to the list's folder.

    ``require_files=False`` keeps entries whose file is gone (an artifact's recorded lists, read
    on another machine: the caller decides what to do without them)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}' "
            "(use an image folder with one sub-folder per class, or a .csv, .tsv or .jsonl list of path,label)"
        )
    base = path.parent.absolute()
    paths: list[str] = []
    labels: list[str] = []
    with reading(path):
        for number, image, label in labelled_rows(path, path_column, label_column, "path"):
            image_path = base / image.strip()
            if require_files and not image_path.is_file():
                raise DataError(f"{path}:{number}: no such image file '{image}' (looked for {image_path})")
            paths.append(str(image_path))
            labels.append(label)
    if not paths:
        raise DataError(f"{path}: no rows")
    return ImageDataset(paths, labels, str(path))


def _class_images(folder: Path) -> list[str]:
    """Image files anywhere under ``folder``, hidden files and folders skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def read_image_folder(path: str | Path) -> ImageDataset:
    """One sub-folder per class (the label is the sub-folder's name), images found recursively in each."""
    root = Path(path).absolute()
    try:
        classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    except OSError as exc:
        raise DataError(f"{path}: cannot read folder ({exc.strerror})") from None
    if loose:
        log.warning(
            "%s: ignored %d image(s) outside class sub-folders (first: %s); put each image in a folder named "
            "after its class",
            path,
            len(loose),
            sorted(loose)[0],
        )
    paths: list[str] = []
    labels: list[str] = []
    empty = []
    for folder in classes:
        images = _class_images(folder)
        if not images:
            empty.append(folder.name)
        paths.extend(images)
        labels.extend([folder.name] * len(images))
    if empty:
        log.warning("%s: ignored %d class folder(s) without images: %s", path, len(empty), ", ".join(empty))
    n_classes = len(classes) - len(empty)
    suffixes = " ".join(IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"{path}: no images found (expected one sub-folder per class holding {suffixes} files)")
    if n_classes < 2:
        raise DataError(
            f"{path}: images for {n_classes} class only; a classifier needs at least 2 (one sub-folder per class)"
        )
    return ImageDataset(paths, labels, str(path))


def read_image_data(path: str | Path, path_column: str = "path", label_column: str = "label") -> ImageDataset:
    """Labelled images from a class-per-folder directory, or a CSV/TSV/JSONL list of path,label."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return read_image_list(path, path_column, label_column)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, OSError) and exc.strerror:  # the path is named by the caller already
        return exc.strerror
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer greyscale (PNG/TIFF) scaled to 8 bits; PIL's own conversion clips at 255."""
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))


def _rgb(image: Image.Image, grey_to_rgb: bool) -> Image.Image:
    """Any PIL mode as 8-bit RGB: transparency composited on white, greyscale replicated to 3 channels."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I"):
        image, mode = _to_8bit(image), "L"
    grey = mode in ("1", "L", "LA", "La")
    if grey and not grey_to_rgb:
        raise ValueError(f"greyscale image ({image.mode}) but the preprocessing has grey_to_rgb=False")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImagePreprocessing:
    """File -> float32 model input: resize the shorter side, centre-crop, scale, normalise, lay out.

    The geometry follows torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` (the same rounding),
    so the usual ImageNet recipe (256 -> 224) gives the pixels pretrained models were evaluated on.
    ``grey_to_rgb=False`` rejects greyscale images instead of replicating them to 3 channels.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1 / 255
    grey_to_rgb: bool = True
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"image preprocessing: {name} must be a positive integer, not {value!r}")
        if self.crop > self.resize:
            raise DataError(f"image preprocessing: crop {self.crop} is larger than resize {self.resize}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise DataError(f"image preprocessing: {name} must be 3 numbers, not {value!r}") from None
            if len(numbers) != 3:
                raise DataError(f"image preprocessing: {name} must be 3 numbers (one per channel), not {value!r}")
            object.__setattr__(self, name, numbers)
        if any(s <= 0 for s in self.std):
            raise DataError(f"image preprocessing: std must be positive, not {self.std}")
        if self.channel_order not in _CHANNEL_ORDERS:
            raise DataError(f"image preprocessing: channel_order '{self.channel_order}' is not RGB or BGR")
        if self.layout not in _LAYOUTS:
            raise DataError(f"image preprocessing: layout '{self.layout}' is not {' or '.join(_LAYOUTS)}")
        if self.interpolation not in _RESAMPLING:
            raise DataError(
                f"image preprocessing: interpolation '{self.interpolation}' is not one of {', '.join(_RESAMPLING)}"
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or self.scale <= 0:
            raise DataError(f"image preprocessing: scale must be a positive number, not {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        if not isinstance(self.grey_to_rgb, bool):
            raise DataError(f"image preprocessing: grey_to_rgb must be true or false, not {self.grey_to_rgb!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one preprocessed image (no batch axis)."""
        return (3, self.crop, self.crop) if self.layout == "NCHW" else (self.crop, self.crop, 3)

    def record(self) -> dict[str, Any]:
        """Every field, JSON-able, for the manifest's ``preprocessing``."""
        record = asdict(self)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ImagePreprocessing":
        if not isinstance(record, dict):
            raise DataError(f"image preprocessing record must be an object, not {type(record).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(record) - set(known))
        if unknown:
            raise DataError(f"image preprocessing record: unknown key '{unknown[0]}' (known: {', '.join(known)})")
        missing = [name for name in ("resize", "crop", "mean", "std") if name not in record]
        if missing:
            raise DataError(f"image preprocessing record: missing key '{missing[0]}'")
        return cls(**record)

    def _decode(self, image: Image.Image) -> Image.Image:
        """Orientation and colour: everything that reads or converts the file's pixels."""
        image = ImageOps.exif_transpose(image)
        return _rgb(image, self.grey_to_rgb)

    def _geometry(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        if short != self.resize:
            new_long = int(self.resize * long / short)  # torchvision's rounding
            size = (self.resize, new_long) if width <= height else (new_long, self.resize)
            image = image.resize(size, _RESAMPLING[self.interpolation], reducing_gap=None)
            width, height = size
        top = int(round((height - self.crop) / 2.0))
        left = int(round((width - self.crop) / 2.0))
        return image.crop((left, top, left + self.crop, top + self.crop))

    def array(self, image: Image.Image) -> np.ndarray:
        """One PIL image as a float32 array of ``shape`` (decode errors surface as PIL's own)."""
        return self._normalise(self._geometry(self._decode(image)))

    def _normalise(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
        pixels = pixels * np.float32(self.scale)
        pixels -= np.asarray(self.mean, dtype=np.float32)
        pixels /= np.asarray(self.std, dtype=np.float32)
        if self.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels)

    def _try_load(self, path: str | Path) -> tuple[np.ndarray | None, str]:
        """(array, "") or (None, one-line reason). Only decoding is guarded, so real bugs still raise."""
        try:
            with Image.open(path) as image:
                image.load()
                fixed = self._geometry(self._decode(image))
        # Decoders of untrusted files raise many types (OSError for truncation, ValueError, SyntaxError,
        # struct.error, DecompressionBombError, ...): any of them means "this file cannot be used".
        except Exception as exc:
            return None, _one_line(exc)
        return self._normalise(fixed), ""

    def load(self, path: str | Path) -> np.ndarray:
        """One image file as a float32 array of ``shape``; DataError naming the file if it cannot be read."""
        array, reason = self._try_load(path)
        if array is None:
            raise DataError(f"{path}: cannot read image ({reason})")
        return array


def load_batch(
    paths: Sequence[str | Path], prep: ImagePreprocessing, strict: bool = False
) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Stack the images that load: (array (N, ...) float32, their indices in ``paths``, failures as (path, reason)).

    With ``strict`` the first unreadable image raises DataError instead.
    """
    arrays: list[np.ndarray] = []
    loaded: list[int] = []
    failures: list[tuple[str, str]] = []
    for index, path in enumerate(paths):
        array, reason = prep._try_load(path)
        if array is None:
            if strict:
                raise DataError(f"{path}: cannot read image ({reason})")
            failures.append((str(path), reason))
            continue
        arrays.append(array)
        loaded.append(index)
    batch = np.stack(arrays) if arrays else np.zeros((0, *prep.shape), dtype=np.float32)
    return batch, loaded, failures


def _probe(path: str) -> str:
    """'' if the file decodes and converts as training will convert it, else a one-line reason.
    JPEGs decode at 1/8 scale: cheap, same failures."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
            _rgb(ImageOps.exif_transpose(image), True)
    except Exception as exc:  # see ImagePreprocessing._try_load
        return _one_line(exc)
    return ""


def check_images(data: ImageDataset, strict: bool = False, workers: int | None = None) -> ImageDataset:
    """Decode every image once and drop the unreadable ones, so nothing fails mid-epoch.

    Logs a warning with the count and the first failure, or with ``strict`` raises DataError on it.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decoders release the GIL
        reasons = list(pool.map(_probe, data.paths))
    bad = [i for i, reason in enumerate(reasons) if reason]
    if not bad:
        return data
    first = bad[0]
    if strict:
        raise DataError(f"{data.paths[first]}: cannot read image ({reasons[first]})")
    if len(bad) == len(data):
        raise DataError(
            f"{data.source}: none of the {len(data)} image(s) can be read "
            f"(first: {data.paths[first]}: {reasons[first]})"
        )
    log.warning("skipped %d unreadable image(s): first: %s (%s)", len(bad), data.paths[first], reasons[first])
    bad_set = set(bad)
    return data.subset(i for i in range(len(data)) if i not in bad_set)
