"""AOTInductor backend: runs a ``.pt2`` package compiled by ``edgeptm compile --target aoti``.

Refuses a package built by another torch version (its kernels are compiled against that
version's ABI) and explains a shape outside the bounds it was compiled for, instead of failing
deep inside the generated code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from edgeptm import trust
from edgeptm.artifacts import Artifact
from edgeptm.errors import BackendError
from edgeptm.runtime.engine import EngineBackend


def check_compatible(artifact: Artifact) -> dict:
    info = artifact.manifest.get("compile") or {}
    built = info.get("torch")
    parent = (artifact.manifest.get("parents") or [{}])[0].get("path", "CHECKPOINT")
    if built != torch.__version__:
        raise BackendError(
            f"{artifact.path}: AOTInductor package built with torch {built}, this is torch {torch.__version__}; "
            f"rebuild it here: edgeptm compile {parent} --target aoti --out DIR"
        )
    if info.get("device") == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"{artifact.path}: compiled for CUDA, and torch sees no CUDA device here")
        cc = "{}.{}".format(*torch.cuda.get_device_capability())
        if info.get("compute_capability") not in (None, cc):
            raise BackendError(
                f"{artifact.path}: AOTInductor package compiled for compute capability {info['compute_capability']} "
                f"({info.get('gpu')}), this GPU is {cc}; rebuild it here: edgeptm compile {parent} --target aoti "
                "--device cuda --out DIR"
            )
    return info


def native_code(artifact: Artifact) -> list[str]:
    """The shared libraries inside the ``.pt2`` (a zip), read from its directory without loading
    any: their constructors run the moment the package is loaded."""
    import zipfile

    path = artifact.file("model")
    try:
        with zipfile.ZipFile(path) as package:
            names = [n for n in package.namelist() if n.endswith((".so", ".dylib", ".dll")) or ".so." in n]
    except (OSError, zipfile.BadZipFile):
        names = []
    where = f"{Path(path).name}: " + (", ".join(names) if names else "compiled kernels")
    return [f"AOTInductor shared library ({where})"]


def _ranges(artifact: Artifact, bounds: dict) -> dict[str, dict[str, list[int]]]:
    """Per input, the min/max shape: fixed axes as they are, dynamic ones within their compiled bounds."""
    ranges = {}
    for entry in artifact.manifest["io"]["inputs"]:
        axes = bounds.get(entry["name"]) or {}
        low = [a if isinstance(a, int) else int(axes.get(a, [1, 2**31])[0]) for a in entry["shape"]]
        high = [a if isinstance(a, int) else int(axes.get(a, [1, 2**31])[1]) for a in entry["shape"]]
        ranges[entry["name"]] = {"min": low, "max": high}
    return ranges


class AotiBackend(EngineBackend):
    what = "AOTInductor package"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        # Before anything of the package is read: its shared library runs code when it is loaded.
        trust.require(artifact, "; ".join(native_code(artifact)))
        info = check_compatible(artifact)
        self.device = info.get("device", "cpu")
        self.name = f"aoti-{self.device}"
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        # The batch and sequence bounds it was compiled for: the Predictor fits requests to them.
        self.init_engine(artifact, _ranges(artifact, info.get("dynamic_shapes") or {}))
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU builds
        try:
            self.model = torch._inductor.aoti_load_package(str(artifact.file("model")))
        except Exception as exc:  # a damaged or foreign package
            raise BackendError(
                f"{artifact.path}: cannot load the AOTInductor package ({str(exc).splitlines()[0]})"
            ) from None

    @torch.inference_mode()
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(array).to(self.device) for array in self.engine_feed(feed)]
        out = self.model(*args)
        out = out[0] if isinstance(out, (list, tuple)) else out
        return {self.output_names[0]: out.cpu().numpy()}

    def close(self) -> None:
        self.model = None
