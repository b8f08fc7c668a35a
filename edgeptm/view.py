"""A small typed view of an artifact's manifest: what the stages read (its inputs and outputs, its
preprocessing and the kind of input it takes, its precision, how runtimes should open it, which
target compiled it), so they ask ``artifact.view.text`` instead of ``"max_length" in preprocessing``.
The manifest itself was checked at ``open_artifact`` (edgeptm.manifest); this only types it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

Axis = Union[int, str]  # a fixed size, or a symbolic axis ("batch", "sequence")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Axis, ...]


@dataclass(frozen=True)
class Preprocessing:
    kind: str  # "text" | "image" | "none" (an artifact that carries no preprocessing)
    max_length: int | None = None  # text: tokens served
    image_size: int | None = None  # images: the side the model sees (crop, else resize)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ManifestView:
    kind: str  # checkpoint | onnx | engine
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing
    precision: str  # fp32, fp16, int8-dynamic, int8-static-qdq, bf16, ...
    runtime: dict[str, Any]  # per runtime, how to open the model (e.g. onnxruntime's disabled optimizers)
    target: str | None  # the compile target of an engine

    @property
    def text(self) -> bool:
        return self.preprocessing.kind == "text"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]


def _tensors(entries: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(e["name"], e.get("dtype", ""), tuple(e.get("shape", ()))) for e in entries)


def view_of(manifest: dict[str, Any]) -> ManifestView:
    pre = manifest.get("preprocessing") or {}
    if "max_length" in pre:
        preprocessing = Preprocessing("text", max_length=int(pre["max_length"]), raw=pre)
    elif pre:
        side = pre.get("crop") or pre.get("resize")
        preprocessing = Preprocessing("image", image_size=int(side) if side else None, raw=pre)
    else:
        preprocessing = Preprocessing("none", raw=pre)
    io = manifest.get("io") or {}
    return ManifestView(
        kind=manifest.get("kind", ""),
        task=manifest.get("task", ""),
        inputs=_tensors(io.get("inputs") or []),
        outputs=_tensors(io.get("outputs") or []),
        preprocessing=preprocessing,
        precision=str(manifest.get("precision") or "fp32"),
        runtime=dict(manifest.get("runtime") or {}),
        target=(manifest.get("compile") or {}).get("target"),
    )
