"""The base of every compiled target's backend: one check of each feed against the engine's inputs
(names, dtypes, shapes within the ranges it was compiled for), the batch and sequence limits the
Predictor fits requests to, and the command that rebuilds the engine, all read from the manifest
the same way for every target. A backend sets its ranges and words; the check is written once."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeptm.errors import BackendError


def rebuild_command(artifact: Any) -> str:
    """The command that compiles this engine again from its parent, on this machine."""
    from edgeptm import targets

    info = artifact.manifest.get("compile") or {}
    parent = (artifact.manifest.get("parents") or [{}])[0].get("path", "SOURCE")
    profile = (artifact.manifest.get("profile") or {}).get("name")
    target = targets.find(info.get("target"))
    flags = f" --profile {profile}" if profile else (target.rebuild_flags(info) if target else "")
    return f"edgeptm compile {parent} --target {info.get('target')}{flags} --out DIR"


def _show(shape: Any) -> str:
    return "x".join(map(str, shape))


class EngineBackend:
    """Mixin for a compiled target's backend. ``init_engine`` reads the manifest; ``engine_feed``
    checks a feed and returns its arrays in input order; ``shape_problem`` words a shape outside the
    ranges (override for a runtime whose limits need other advice)."""

    what = "engine"  # the runtime's own word for its engine, for messages ("... IR", "... package")

    def init_engine(self, artifact: Any, ranges: dict[str, dict[str, list[int]]] | None) -> None:
        inputs = artifact.manifest["io"]["inputs"]
        self.input_names = [i["name"] for i in inputs]
        self.output_names = [o["name"] for o in artifact.manifest["io"]["outputs"]]
        self.input_dtypes = {i["name"]: np.dtype(i["dtype"]) for i in inputs}
        self.axes = {i["name"]: list(i["shape"]) for i in inputs}
        self.ranges = {name: r for name, r in (ranges or {}).items() if name in self.axes}
        self.rebuild = rebuild_command(artifact)
        self.max_batch = self._axis_limit("batch")
        sequences = self._axis_ranges("sequence")
        self.sequence_bounds = (max(lo for lo, _ in sequences), min(hi for _, hi in sequences)) if sequences else None

    def _axis_ranges(self, axis: str) -> list[tuple[int, int]]:
        found = []
        for name, r in self.ranges.items():
            if axis in self.axes[name] and len(r["min"]) == len(self.axes[name]):
                i = self.axes[name].index(axis)
                found.append((int(r["min"][i]), int(r["max"][i])))
        return found

    def _axis_limit(self, axis: str) -> int | None:
        found = self._axis_ranges(axis)
        return min(hi for _, hi in found) if found else None

    def engine_feed(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The feed's arrays in the engine's input order, each checked once: present, of the
        engine's dtype, within its shape ranges (``fit`` may adapt a shape first)."""
        arrays = []
        for name in self.input_names:
            if name not in feed:
                raise BackendError(
                    f"the feed has no input '{name}' (this {self.what} takes {', '.join(self.input_names)})"
                )
            array = np.ascontiguousarray(feed[name])
            if array.dtype != self.input_dtypes[name]:
                raise BackendError(f"input '{name}' is {array.dtype}, this {self.what} takes {self.input_dtypes[name]}")
            array = self.fit(name, array)
            r = self.ranges.get(name)
            if r is not None:
                low, high = r["min"], r["max"]
                if len(array.shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(array.shape, low, high)):
                    raise BackendError(self.shape_problem(name, tuple(array.shape), low, high))
            arrays.append(array)
        return arrays

    def fit(self, name: str, array: np.ndarray) -> np.ndarray:
        """Adapt an array before the check (a static engine may pad a short batch); default: as is."""
        return array

    def shape_problem(self, name: str, shape: tuple[int, ...], low: list[int], high: list[int]) -> str:
        axes = self.axes.get(name, [])
        if len(shape) != len(low):
            return (
                f"input '{name}': {len(shape)} dims ({_show(shape)}), this {self.what} takes {len(low)}: {self.rebuild}"
            )
        if list(low) == list(high):
            return (
                f"input '{name}': shape {_show(shape)}, but this {self.what} was compiled for the static shape "
                f"{_show(low)}; feed that shape (the Predictor pads and splits to it), or rebuild with other --shapes "
                f"(or none, for dynamic shapes): {self.rebuild}"
            )
        bounds = ", ".join(f"{lo}..{hi}" for lo, hi in zip(low, high))
        out = [
            f"{axes[i] if i < len(axes) and isinstance(axes[i], str) else f'axis {i}'} {s} is outside the {lo}..{hi}"
            for i, (s, lo, hi) in enumerate(zip(shape, low, high))
            if not lo <= s <= hi
        ]
        return (
            f"input '{name}': shape {_show(shape)} is outside the {bounds} this {self.what} was compiled for "
            f"({'; '.join(out)}); rebuild with a larger --max-batch/--max-seq-len or --shapes: {self.rebuild}"
        )
