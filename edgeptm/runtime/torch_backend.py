"""PyTorch eager backend for checkpoint artifacts, text or image (FP32, inference mode)."""

from __future__ import annotations

import numpy as np
import torch

from edgeptm.artifacts import Artifact
from edgeptm.tasks import get_task


class TorchBackend:
    name = "torch-eager"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        self.model = get_task(artifact.task).torch_model(artifact)
        self.settings = {"torch": torch.__version__, "intra_op_threads": torch.get_num_threads(), "mode": "eager"}
        self.input_names = artifact.view.input_names
        self.output_names = [o["name"] for o in artifact.manifest["io"]["outputs"]]

    @torch.inference_mode()
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in self.input_names]
        logits = self.model(*args)
        return {self.output_names[0]: logits.numpy()}

    def close(self) -> None:
        self.model = None
