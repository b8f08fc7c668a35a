"""Fine-tune a pretrained model (text or image) for classification: setup -> train -> evaluate -> save.

One readable recipe. Training state (weights, optimizer, scheduler, RNG) is checkpointed to a
hidden directory beside ``--out`` every ``checkpoint_every`` steps and at each epoch's end, so an
interrupted run continues with ``resume=True`` and ends with the same weights as an uninterrupted
one (same seed and thread count). The artifact itself appears at ``--out`` only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeptm.artifacts import (
    Artifact,
    ArtifactWriter,
    check_not_input,
    check_out_dir,
    open_artifact,
    sha256_file,
)
from edgeptm.data.text import seeded_split
from edgeptm.errors import ArtifactError, UsageError
from edgeptm.models import resolve_model
from edgeptm.tasks import get_task

log = logging.getLogger(__name__)

STATE_FILES = ("model.safetensors", "optim.pt", "state.json")


@dataclass
class FinetuneOptions:
    model: str = "minilm-l6"
    train: str = ""
    val: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # None: the model's default (text 5e-5, images 1e-3), 1e-3 on a frozen backbone
    max_length: int = 128
    # images
    image_size: int | None = None  # None: the model's own (224 for the ImageNet models)
    weights: str | None = None  # a local state dict for torchvision:/timm: models
    pretrained: bool = True  # False: random init, only when asked (--no-pretrained)
    augment: bool = True  # random horizontal flips of training images
    strict: bool = False  # an unreadable image is an error (default: skipped and counted)
    freeze_backbone: bool = False
    seed: int = 0
    resume: bool = False
    val_fraction: float = 0.1  # held out of --train when --val is absent
    train_limit: int | None = None  # use only the first N training rows (after a seeded shuffle)
    val_limit: int | None = None  # score on a seeded subset of N validation rows
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    checkpoint_every: int = 200  # optimizer steps between resumable checkpoints
    threads: int | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def learning_rate(self, task: str = "text-classification") -> float:
        if self.lr is not None:
            return self.lr
        if self.freeze_backbone:
            return 1e-3
        # Transformers forget their pretraining at CNN rates; small CNNs need more than 5e-5 to move.
        return 5e-5 if task == "text-classification" else 1e-3

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and not (0 < self.lr < 1):
            raise UsageError(f"--lr must be in (0, 1), got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _load_data(opts: FinetuneOptions, task: Any) -> tuple[Any, Any, str, dict[str, str | None]]:
    """Train and validation data, how the validation was chosen, and digests of what was read."""
    train = task.read_data(opts.train, opts)
    digests: dict[str, str | None] = {"train_sha256": data_digest(Path(opts.train), train), "val_sha256": None}
    if opts.val:
        val = task.read_data(opts.val, opts)
        digests["val_sha256"] = data_digest(Path(opts.val), val)
        how = f"--val {opts.val}"
    else:
        train, val = seeded_split(train, opts.val_fraction, opts.seed)
        how = f"seeded split of --train ({opts.val_fraction:.0%} held out, seed {opts.seed})"
    train = _seeded_subset(train, opts.train_limit, opts.seed)
    if opts.val_limit and opts.val_limit < len(val):
        val = _seeded_subset(val, opts.val_limit, opts.seed)
        how += f", a seeded subset of {opts.val_limit}"
    labels = train.label_set()
    if len(labels) < 2:
        raise UsageError(
            f"{opts.train}: training data has a single label '{labels[0]}'; classification needs two or more"
        )
    val.check_labels(labels)
    return train, val, how, digests


def _inputs(opts: FinetuneOptions) -> list[str | None]:
    """What finetune reads, which --out (replaced with --force) and its training state may not touch:
    --train, --val, --weights, and a local model directory (hf:DIR)."""
    inputs = [opts.train, opts.val, opts.weights]
    kind, _, where = opts.model.partition(":")
    if kind == "hf" and where and Path(where).exists():
        inputs.append(where)
    return inputs


def _check_state_apart(out: Path, inputs: list[str | None]) -> None:
    """The resumable state beside --out is cleared at the start of a run: it may not hold an input."""
    root = _TrainState(out).root
    try:
        check_not_input(root, inputs)
    except UsageError:
        raise UsageError(
            f"--out {out}: its training-state directory {root} would overlap an input (--train, --val, "
            "--weights, the model); choose another --out"
        ) from None


def _check_keeps_images(out: Path, data: Any) -> None:
    """An image list (CSV/JSONL of paths) may name images anywhere: --out may not be, or contain,
    a folder holding them (with --force, replacing it would delete them)."""
    if getattr(data, "INPUTS", None) != "paths":
        return
    target = out.resolve()
    for folder in sorted({os.path.dirname(p) for p in data.inputs}):
        resolved = Path(folder).resolve()
        if resolved == target or target in resolved.parents:
            where = "is" if resolved == target else "contains"
            raise UsageError(
                f"--out {out}: {where} the folder {folder} of images listed in {data.source}; "
                "choose a directory apart from the inputs"
            )


def _seeded_subset(data: Any, limit: int | None, seed: int) -> Any:
    if not limit or limit >= len(data):
        return data
    import random

    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return data.subset(sorted(order[:limit]))


def _fingerprint(opts: FinetuneOptions, digests: dict[str, str | None]) -> dict[str, Any]:
    """What must be equal for a checkpoint to be resumed."""
    keep = (
        "model",
        "text_column",
        "label_column",
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "freeze_backbone",
        "seed",
        "val_fraction",
        "train_limit",
        "val_limit",
        "weight_decay",
        "warmup_ratio",
        "image_size",
        "weights",
        "pretrained",
        "augment",
    )
    return {**{k: getattr(opts, k) for k in keep}, **digests}


def data_digest(path: Path, data: Any) -> str:
    """sha256 of a data file; for an image folder, of the images the reader took from it (``data``,
    as read): relative path, size and modification time of each. An image list (CSV/JSONL) is
    hashed as a file: its images are not re-read."""
    if path.is_file():
        return sha256_file(path)
    import hashlib

    digest = hashlib.sha256()
    for image in data.inputs:
        stat = Path(image).stat()
        digest.update(
            f"{Path(image).relative_to(path.absolute()).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


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

    def load(self, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and RNG; anything unreadable or that does not fit
        this run is an ArtifactError (one line), and nothing is unpickled beyond tensors."""
        import torch
        from safetensors.torch import load_file

        info = self.info()
        counters = ("epoch", "step", "global_step")
        history = info.get("history")
        scores = ("accuracy", "macro_f1", "loss")  # what the artifact's metrics are taken from
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


def _evaluate(recipe: Any, labels: list[str]) -> dict[str, float]:
    import numpy as np

    from edgeptm.metrics import classification_metrics

    index = {name: i for i, name in enumerate(labels)}
    truth = [index[label] for label in recipe.val.labels]
    logits = recipe.eval_logits()
    metrics = classification_metrics(logits, truth, len(labels))
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    metrics["loss"] = float(-log_probs[np.arange(len(truth)), truth].mean())
    return metrics


def finetune(opts: FinetuneOptions, out: str | Path, force: bool = False) -> Artifact:
    """Fine-tune ``opts.model`` on ``opts.train``; write a checkpoint artifact to ``out``."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    out = Path(out)
    opts.validate()
    inputs = _inputs(opts)
    check_out_dir(out, force, inputs)
    _check_state_apart(out, inputs)
    spec = resolve_model(opts.model)
    task = get_task(spec.task)
    if spec.task == "image-classification":
        spec = spec.with_options(opts.weights, opts.pretrained, opts.image_size)
    elif opts.weights or not opts.pretrained or opts.image_size:
        raise UsageError(f"--weights, --no-pretrained and --image-size are for image models, not {opts.model}")
    train, val, val_how, digests = _load_data(opts, task)
    for data in (train, val):
        _check_keeps_images(out, data)
    labels = train.label_set()
    dist = _distributed()
    fingerprint = {**_fingerprint(opts, digests), "world_size": dist.world}
    if opts.threads:
        torch.set_num_threads(opts.threads)

    torch.manual_seed(opts.seed)
    recipe = task.recipe(spec, opts, train, val, labels)
    model = recipe.model
    if opts.freeze_backbone:
        recipe.freeze()
    forward = model
    if dist.world > 1:
        # DDP broadcasts rank 0's weights and averages gradients; each process gets its own dropout.
        forward = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(opts.seed + 7919 * dist.rank)
    index = {name: i for i, name in enumerate(labels)}
    targets = torch.tensor([index[label] for label in train.labels])
    lr = opts.learning_rate(spec.task)

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # No weight decay on biases and normalisation scales (LayerNorm, BatchNorm): they are not weights
    # that overfit, and decaying a norm's scale shrinks the activations it exists to set.
    norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
    norm_scales = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, norms)}

    def _no_decay(name: str) -> bool:
        return name.endswith("bias") or name in norm_scales

    groups = [
        {"params": [p for n, p in params if not _no_decay(n)], "weight_decay": opts.weight_decay},
        {"params": [p for n, p in params if _no_decay(n)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    batching = dict(batch_size=opts.batch_size, world=dist.world, per_rank=recipe.min_batch)
    steps_per_epoch = len(_global_batches(len(train), list(range(len(train))), **batching))
    total_steps = steps_per_epoch * opts.epochs
    warmup = int(total_steps * opts.warmup_ratio)

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    state = _TrainState(out)
    start_epoch, start_step, history, resumed_from = 0, 0, [], None
    if opts.resume and state.exists():
        info = state.info()
        if info["fingerprint"] != fingerprint:
            diff = sorted(k for k in fingerprint if info["fingerprint"].get(k) != fingerprint[k])
            raise UsageError(
                f"the checkpoint in {state.root} was made with different settings ({', '.join(diff)}); "
                "rerun with the same options, or without --resume to start over"
            )
        info = state.load(model, optimizer, scheduler)
        start_epoch, start_step, history = info["epoch"], info["step"], info["history"]
        resumed_from = info["global_step"]
        log.info("resuming from step %d (epoch %d, batch %d)", resumed_from, start_epoch + 1, start_step)
    elif opts.resume:
        log.warning("--resume: no checkpoint in %s, starting from the beginning", state.root)
    elif dist.main:
        state.clear()
    dist.barrier()

    started = time.perf_counter()
    global_step = start_epoch * steps_per_epoch + start_step

    def checkpoint(epoch: int, step: int) -> None:
        """Resumable state: continue at batch ``step`` of epoch ``epoch`` (0-based)."""
        info = {
            "epoch": epoch,
            "step": step,
            "global_step": global_step,
            "fingerprint": fingerprint,
            "history": history,
        }
        state.save(model, optimizer, scheduler, info)

    for epoch in range(start_epoch, opts.epochs):
        recipe.train_mode(opts.freeze_backbone)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(opts.seed * 1000 + epoch)).tolist()
        first = start_step if epoch == start_epoch else 0
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{opts.epochs}",
            disable=not (opts.progress and dist.main),
            unit="batch",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not 10/s
        )
        loss_sum, seen, tick = 0.0, 0, time.perf_counter()
        for step, batch in enumerate(_global_batches(len(train), order, **batching)):
            if step < first:
                continue
            idx = batch[dist.rank :: dist.world]  # this process's share of the global batch
            logits = forward(*recipe.batch(idx))
            loss = torch.nn.functional.cross_entropy(logits, targets[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            # refresh=False: the postfix shows at the bar's own pace (mininterval), not once per step.
            rate = seen * dist.world / (time.perf_counter() - tick)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", samples_s=f"{rate:.0f}", refresh=False)
            bar.update(1)
            if dist.main and global_step % opts.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                checkpoint(epoch, step + 1)
        bar.close()
        if dist.main:
            metrics = _evaluate(recipe, labels)
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen), **metrics})
            log.info(
                "epoch %d/%d: train loss %.4f, val accuracy %.4f, macro-F1 %.4f, val loss %.4f (%d samples)",
                epoch + 1,
                opts.epochs,
                loss_sum / max(1, seen),
                metrics["accuracy"],
                metrics["macro_f1"],
                metrics["loss"],
                len(val),
            )
            checkpoint(epoch + 1, 0)
        dist.barrier()
    train_seconds = time.perf_counter() - started
    if not dist.main:  # rank 0 writes the artifact; the others wait for it
        dist.barrier()
        return open_artifact(out)
    final = history[-1] if history else _evaluate(recipe, labels)
    model.eval()

    with ArtifactWriter(out, force=force, inputs=inputs) as writer:
        weights = writer.add("weights", "model.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        parts = recipe.write(writer)
        artifact = writer.finish(
            "checkpoint",
            {
                **parts,
                "labels": labels,
                "precision": "fp32",
                "parents": [],
                "training": {
                    **{k: v for k, v in asdict(opts).items() if k not in ("progress", "extra", "resume")},
                    "lr": lr,
                    "train_samples": len(train),
                    "val_samples": len(val),
                    "validation": val_how,
                    "train_sha256": fingerprint["train_sha256"],
                    "steps": global_step,
                    "train_seconds": round(train_seconds, 1),
                    "resumed_from_step": resumed_from,
                    "torch_threads": torch.get_num_threads(),
                    "world_size": dist.world,
                    "history": history,
                },
                "metrics": {
                    "accuracy": final["accuracy"],
                    "macro_f1": final["macro_f1"],
                    "val_loss": final["loss"],
                    "val_samples": len(val),
                    "measured_with": "torch-eager fp32",
                },
            },
        )
    state.clear()
    dist.barrier()
    return artifact
