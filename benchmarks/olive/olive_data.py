"""Olive user_script: data components that read the feeds prepare_data.py wrote (edgeptm's own
preprocessing), so Olive calibrates, scores and times on exactly edgeptm's inputs.

Loaded by Olive (data_configs[*].user_script) inside Olive's venv; imports neither edgeptm nor
anything but numpy, torch and Olive's registry.

- ``edgeptm_feeds`` (dataset): one item per stored batch: (dict of input tensors, label tensor).
  ``kind`` picks the file: "val" (Predictor's batches of 32 with their label indices), "calib"
  (one feed per item, label 0) or "latency" (the single feed edgeptm bench times, label 0).
- Image pixels are stored as uint8 after resize + crop (meta.json "stored"); each batch is
  normalised when it is read, with the float32 operations of edgeptm's ImagePreprocessing
  (prepare_data.py checks the result equals edgeptm's feed bit for bit).
- Batches are already made: pair it with Olive's ``no_auto_batch_dataloader``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olive.data.registry import Registry


def normalise(pixels: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 model input, as edgeptm's ImagePreprocessing._normalise."""
    x = pixels.astype(np.float32) * np.float32(record["scale"])
    x -= np.asarray(record["mean"], dtype=np.float32)
    x /= np.asarray(record["std"], dtype=np.float32)
    if record["channel_order"] == "BGR":
        x = x[..., ::-1]
    if record["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


class _Feeds(torch.utils.data.Dataset):
    """Items read (and image pixels normalised) when asked for: the 10,000 images at 224 never sit
    in memory as float32 all at once."""

    def __init__(self, data_dir: str, kind: str, limit: int | None) -> None:
        meta = json.loads((Path(data_dir) / "meta.json").read_text())
        stored = meta.get("stored", "feeds")
        self.record = None if stored == "feeds" or kind == "latency" else stored["normalise"]
        self.data = np.load(Path(data_dir) / f"{kind}.npz")
        self.kind = kind
        if kind == "val":
            batches: dict[str, list[str]] = {}
            for key in self.data.files:
                batches.setdefault(key.split(".", 1)[0], []).append(key)
            self.items, left = [], limit
            for batch in sorted(batches):
                labels = self.data[f"{batch}.labels"]
                take = len(labels) if left is None else min(left, len(labels))
                if take <= 0:
                    break
                names = [k.split(".", 1)[1] for k in batches[batch] if not k.endswith(".labels")]
                self.items.append((batch, names, take))
                left = None if left is None else left - take
        elif kind == "calib":  # small: read once (an npz member is read whole at every access)
            self.arrays = {name: self.data[name] for name in self.data.files}
            n = len(next(iter(self.arrays.values())))
            self.items = list(range(min(n, limit) if limit else n))
        elif kind == "latency":
            self.items = [0]
        else:
            raise ValueError(f"unknown feed kind {kind!r} (val, calib, latency)")

    def __len__(self) -> int:
        return len(self.items)

    def _input(self, array: np.ndarray) -> torch.Tensor:
        if self.record is not None and array.dtype == np.uint8:
            array = normalise(array, self.record)
        return torch.from_numpy(np.ascontiguousarray(array))

    def __getitem__(self, index: int):
        if self.kind == "val":
            batch, names, take = self.items[index]
            feed = {name: self._input(self.data[f"{batch}.{name}"][:take]) for name in names}
            return feed, torch.from_numpy(self.data[f"{batch}.labels"][:take])
        if self.kind == "calib":
            feed = {name: self._input(array[index]) for name, array in self.arrays.items()}
            return feed, torch.zeros(1, dtype=torch.int64)
        return {name: torch.from_numpy(self.data[name]) for name in self.data.files}, torch.zeros(1, dtype=torch.int64)


@Registry.register_dataset()
def edgeptm_feeds(data_dir: str, kind: str, limit: int | None = None, **kwargs):
    return _Feeds(data_dir, kind, limit)
