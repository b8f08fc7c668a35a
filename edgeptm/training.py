"""What every fine-tuning recipe shares: the resumable training state beside --out, and the place
of this process in a torchrun job (classifiers: edgeptm.finetuning; causal LMs: edgeptm.lm_finetuning)."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeptm.errors import ArtifactError

STATE_FILES = ("model.safetensors", "optim.pt", "state.json")


class _TrainState:
    """The resumable state directory beside --out."""

    def __init__(self, out: Path) -> None:
        self.root = out.parent / f".{out.name}.train-state"
        self.latest = self.root / "latest"

    def exists(self) -> bool:
        if not self.latest.exists():
            # Killed between save()'s two renames: "tmp" is complete (latest is moved aside only
            # once it is written, state.json last), else "old" is the last complete state.
            for fallback in (self.root / "tmp", self.root / "old"):
                if all((fallback / f).is_file() for f in STATE_FILES):
                    try:
                        fallback.rename(self.latest)
                    except OSError:  # another rank of a torchrun job got there first
                        pass
                    break
        return all((self.latest / f).is_file() for f in STATE_FILES)

    def save(self, model: Any, optimizer: Any, scheduler: Any, info: dict[str, Any]) -> None:
        import torch
        from safetensors.torch import save_file

        tmp = self.root / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
            tmp / "optim.pt",
        )
        (tmp / "state.json").write_text(json.dumps(info, indent=2))
        old = self.root / "old"
        shutil.rmtree(old, ignore_errors=True)
        if self.latest.exists():
            self.latest.rename(old)
        tmp.rename(self.latest)
        shutil.rmtree(old, ignore_errors=True)

    def _refuse(self, what: str, why: str) -> ArtifactError:
        return ArtifactError(
            f"{self.latest / what}: not a training state this run can resume ({why}); "
            "rerun without --resume to start over (that clears it)"
        )

    def info(self) -> dict[str, Any]:
        """state.json (a mapping with the run's fingerprint), read without trusting it."""
        try:
            info = json.loads((self.latest / "state.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self._refuse("state.json", _brief(exc)) from None
        if not isinstance(info, dict) or not isinstance(info.get("fingerprint"), dict):
            raise self._refuse("state.json", "no fingerprint mapping")
        return info

    def load(
        self, model: Any, optimizer: Any, scheduler: Any, scores: tuple[str, ...] = ("accuracy", "macro_f1", "loss")
    ) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and RNG; anything unreadable or that does not fit
        this run is an ArtifactError (one line), and nothing is unpickled beyond tensors."""
        import torch
        from safetensors.torch import load_file

        info = self.info()
        counters = ("epoch", "step", "global_step")
        history = info.get("history")
        # ``scores``: what each epoch's record holds (the artifact's metrics are taken from them)
        if not (
            all(type(info.get(k)) is int and info[k] >= 0 for k in counters)
            and isinstance(history, list)
            and all(isinstance(h, dict) and all(isinstance(h.get(k), (int, float)) for k in scores) for h in history)
        ):
            raise self._refuse(
                "state.json", "needs epoch, step and global_step (integers >= 0) and a history of epoch scores"
            )
        try:
            weights = load_file(str(self.latest / "model.safetensors"))
            model.load_state_dict(weights)
        except Exception as exc:  # SafetensorError on junk; RuntimeError on missing or misshapen tensors
            raise self._refuse("model.safetensors", _brief(exc)) from None
        try:
            # weights_only: tensors and plain containers only, never arbitrary objects (a planted
            # pickle's code does not run: it is refused). torch raises UnpicklingError, RuntimeError,
            # EOFError, IndexError... on junk, and warns about pickle protocols it did not write.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                blob = torch.load(self.latest / "optim.pt", map_location="cpu", weights_only=True)
        except Exception as exc:
            raise self._refuse("optim.pt", _torch_load_reason(exc)) from None
        try:
            _check_optim_blob(blob, optimizer, scheduler)
            optimizer.load_state_dict(blob["optimizer"])
            _check_optimizer_state(optimizer)
            scheduler.load_state_dict(blob["scheduler"])
            torch.set_rng_state(blob["rng"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
            raise self._refuse("optim.pt", _brief(exc)) from None
        return info

    def save_best(self, weights: dict[str, Any], epoch: int, logits: Any) -> None:
        """The best epoch's weights and validation logits, written whole before they replace the last."""
        from safetensors.torch import save_file

        tmp, best = self.root / "best-tmp", self.root / "best"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
        np.save(tmp / "logits.npy", np.asarray(logits, dtype=np.float32), allow_pickle=False)
        (tmp / "best.json").write_text(json.dumps({"epoch": epoch}))
        shutil.rmtree(best, ignore_errors=True)
        tmp.rename(best)

    def load_best(self) -> tuple[dict[str, Any], int, Any] | None:
        from safetensors.torch import load_file

        best = self.root / "best"
        if not (best / "best.json").is_file():
            return None
        try:
            epoch = json.loads((best / "best.json").read_text())["epoch"]
            weights = load_file(str(best / "model.safetensors"))
            logits = np.load(best / "logits.npy", allow_pickle=False)
        except Exception as exc:  # junk where the best epoch was kept
            raise self._refuse("../best", _brief(exc)) from None
        if type(epoch) is not int:
            raise self._refuse("../best/best.json", "no epoch number")
        return weights, epoch, logits

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _brief(exc: BaseException) -> str:
    """An exception's message on one line, shortened (torch's run over many lines)."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def _torch_load_reason(exc: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to load it unsafely."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].split())
        return f"it holds more than tensors: {detail}"[:300]
    return _brief(exc).split(". ")[0]


def _check_optim_blob(blob: Any, optimizer: Any, scheduler: Any) -> None:
    """The shape of what ``_TrainState.save`` writes, before any of it is loaded: a scheduler state
    with other keys or types would be written into the scheduler object as it is."""
    import torch

    if not isinstance(blob, dict) or set(blob) != {"optimizer", "scheduler", "rng"}:
        raise ValueError("expected a mapping of optimizer, scheduler and rng")
    own = scheduler.state_dict()
    theirs = blob["scheduler"]
    if not isinstance(theirs, dict) or set(theirs) != set(own):
        raise ValueError(f"the scheduler state has other keys than {', '.join(sorted(own))}")
    for key, value in own.items():
        if value is not None and type(theirs[key]) is not type(value):
            raise ValueError(f"scheduler '{key}' is {type(theirs[key]).__name__}, not {type(value).__name__}")
    rng, expected = blob["rng"], torch.get_rng_state()
    if not isinstance(rng, torch.Tensor) or rng.dtype != expected.dtype or rng.shape != expected.shape:
        raise ValueError("rng is not a CPU generator state")
    if not isinstance(blob["optimizer"], dict):
        raise ValueError("the optimizer state is not a mapping")


def _check_optimizer_state(optimizer: Any) -> None:
    """Each parameter's moments must have the parameter's shape (else the first step fails deep in AdamW)."""
    import torch

    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(
                        f"optimizer '{key}' has shape {list(value.shape)} for a parameter of {list(param.shape)}"
                    )


@dataclass(frozen=True)
class _Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _distributed() -> _Dist:
    """Join the process group torchrun set up (WORLD_SIZE > 1); gloo, since training runs on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def _global_batches(n: int, order: list[int], batch_size: int, world: int, per_rank: int = 1) -> list[list[int]]:
    """Global batches in ``order``. A final batch too small to give each process ``per_rank``
    samples is dropped: every process must take part in every gradient all-reduce, and BatchNorm
    cannot train on a single sample."""
    batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= world * per_rank]
