"""TensorRT, imported lazily, and the GPU it runs on: what the build, the backend and the
runtime check share."""

from __future__ import annotations

import logging
from typing import Any

from edgeptm.errors import RuntimeUnavailable

log = logging.getLogger("edgeptm.targets.tensorrt")

INSTALL_HINT = (
    "pip install 'edgeptm[tensorrt]' on a machine with an NVIDIA GPU and driver "
    "(on a Jetson: JetPack's python3-libnvinfer)"
)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or RuntimeUnavailable naming what to install."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there, its CUDA libraries are not
        raise RuntimeUnavailable(f"TensorRT is not available here ({exc}): {INSTALL_HINT}") from None
    return tensorrt


def major(version: str) -> int:
    return int(str(version).split(".")[0])


def gpu_identity() -> dict[str, Any]:
    """The CUDA device an engine is built on or will run on."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeUnavailable("TensorRT needs an NVIDIA GPU and torch sees no CUDA device here")
    index = torch.cuda.current_device()
    cc = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{cc[0]}.{cc[1]}"}


def _logger(trt: Any) -> Any:
    class Logger(trt.ILogger):
        """Errors are kept for the message that explains a failed build; warnings go to logging."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return Logger()
