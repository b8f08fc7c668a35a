"""Fine-tune a pretrained model (text or image) for classification: setup -> train -> evaluate -> save.

One readable recipe. Training state (weights, optimizer, scheduler, RNG) is checkpointed to a
hidden directory beside ``--out`` every ``checkpoint_every`` steps and at each epoch's end, so an
interrupted run continues with ``resume=True`` and ends with the same weights as an uninterrupted
one (same seed and thread count). The artifact itself appears at ``--out`` only when complete.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeptm.artifacts import (
    Artifact,
    ArtifactWriter,
    check_not_input,
    check_out_dir,
    open_artifact,
    sha256_file,
)
from edgeptm.data.text import seeded_split
from edgeptm.errors import UsageError
from edgeptm.metrics import log_loss
from edgeptm.models import resolve_model
from edgeptm.probing import install, train_probe
from edgeptm.tasks import get_task
from edgeptm.training import _distributed, _global_batches, _TrainState

log = logging.getLogger(__name__)


@dataclass
class FinetuneOptions:
    model: str = "minilm-l6"
    train: str = ""
    val: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    epochs: int | str = 3  # or "auto": until the selection metric stops improving (patience, max_epochs)
    batch_size: int | None = None  # None: 16 below SMALL_TRAIN rows (twice the steps per epoch), else 32
    lr: float | None = None  # the body's rate (its top layer); None: the recipe's (1e-4), 1e-3 on a frozen body
    head_lr: float | None = None  # the new head's; None: the recipe's multiple of lr (10x)
    layer_decay: float | None = None  # each body layer below the top gets this times less; None: the recipe's
    select_metric: str = "auto"  # which epoch is kept: accuracy | macro_f1 | auto (macro-F1 on imbalanced labels)
    patience: int = 2  # --epochs auto: stop after this many epochs without improvement
    max_epochs: int = 20  # --epochs auto: at most this many
    strategy: str = "auto"  # finetune | probe | auto: keep whichever of the two scores better
    class_weights: str = "none"  # none | balanced: the loss weighs each class by the inverse of its share
    head_init: str = "probe"  # probe: the head starts as the linear probe (LP-FT) | random
    max_length: int | None = None  # tokens per text; None: 128 for classifiers, 512 for generators
    # causal LMs (edgeptm.lm_finetuning)
    task: str | None = None  # None: the model's own; text-generation for a causal LM
    full: bool = False  # train every weight instead of LoRA adapters
    lora_rank: int = 16
    lora_alpha: int | None = None  # None: 2 x rank
    lora_dropout: float = 0.05
    lora_targets: str | None = None  # comma-separated module names; None: every attention and MLP projection
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

    def validate(self) -> None:
        if self.epochs != "auto" and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)):
            raise UsageError(f"--epochs must be a number or 'auto', got {self.epochs!r}")
        if self.max_length is not None and self.max_length < 1:
            raise UsageError(f"--max-length must be >= 1, got {self.max_length}")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        for name in ("checkpoint_every", "patience", "max_epochs") + (("epochs",) if self.epochs != "auto" else ()):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and not (0 < value < 1):
                raise UsageError(f"--{name.replace('_', '-')} must be in (0, 1), got {value}")
        if self.layer_decay is not None and not (0 < self.layer_decay <= 1):
            raise UsageError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        for name, choices in (
            ("select_metric", SELECT_METRICS),
            ("strategy", STRATEGIES),
            ("class_weights", CLASS_WEIGHTS),
            ("head_init", HEAD_INITS),
        ):
            if getattr(self, name) not in choices:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: not one of {', '.join(choices)}")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


SELECT_METRICS = ("auto", "accuracy", "macro_f1")
STRATEGIES = ("auto", "finetune", "probe")
CLASS_WEIGHTS = ("none", "balanced")
HEAD_INITS = ("probe", "random")
SMALL_TRAIN = 1000  # below this many training rows the default batch is 16, not 32
IMBALANCED = 1.5  # largest class / smallest class in training above this: select by macro-F1


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
        "head_lr",
        "layer_decay",
        "select_metric",
        "patience",
        "max_epochs",
        "strategy",
        "class_weights",
        "head_init",
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


def _evaluate(recipe: Any, labels: list[str]) -> dict[str, Any]:
    """The epoch's validation figures (history keeps accuracy, macro-F1, loss), and its logits."""
    from edgeptm.metrics import classification_metrics

    index = {name: i for i, name in enumerate(labels)}
    truth = [index[label] for label in recipe.val.labels]
    logits = recipe.eval_logits()
    metrics: dict[str, Any] = classification_metrics(logits, truth, len(labels))
    metrics["loss"] = log_loss(logits, truth)
    metrics["logits"] = logits
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
    if opts.task is not None and opts.task != spec.task:
        raise UsageError(f"--task {opts.task}: {opts.model} is a {spec.task} model")
    if spec.task == "text-generation":
        from edgeptm.lm_finetuning import finetune_lm

        return finetune_lm(spec, opts, out, force, inputs)
    if opts.full or opts.lora_targets:
        raise UsageError(f"--full and --lora-* are for generators (causal LMs), not {opts.model}")
    if opts.max_length is None:
        opts.max_length = 128
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
    index = {name: i for i, name in enumerate(labels)}
    targets = torch.tensor([index[label] for label in train.labels])
    counts = np.bincount(targets.numpy(), minlength=len(labels))
    select = opts.select_metric
    if select == "auto":  # accuracy flatters a model that ignores rare classes: macro-F1 then
        select = "macro_f1" if counts.max() > IMBALANCED * max(1, counts.min()) else "accuracy"
    weights = counts.sum() / (len(labels) * np.maximum(counts, 1)) if opts.class_weights == "balanced" else None
    loss_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    # The baseline first (seconds): logistic regression on the frozen pretrained features.
    probe, probe_started = None, time.perf_counter()
    if dist.main or opts.strategy == "probe":
        # Balanced when the labels are imbalanced and not weighted already: the probe's loss then
        # values the rare classes as macro-F1 does (400 sentences, 7% 'plot': macro-F1 0.46 -> see
        # benchmarks/SMALL_DATA.md), and the head that fine-tuning starts from does not ignore them.
        balanced = counts.sum() / (len(labels) * np.maximum(counts, 1))
        probe = train_probe(
            recipe, labels, opts.seed, balanced if weights is None and select == "macro_f1" else weights
        )
        probe["metrics"] = _scores(probe["val_logits"], recipe, labels)
        probe["seconds"] = round(time.perf_counter() - probe_started, 1)  # not in train_seconds
        log.info(
            "linear probe (frozen pretrained features, %d rows, L2 %g): val accuracy %.4f, macro-F1 %.4f",
            probe["train_samples"],
            probe["l2"],
            probe["metrics"]["accuracy"],
            probe["metrics"]["macro_f1"],
        )
    initial = None
    if opts.strategy == "auto" and dist.main:  # the probe, if it wins, is the pretrained body + its head
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if probe is not None and opts.strategy != "probe" and opts.head_init == "probe":
        # Linear probe, then fine-tune (LP-FT, Kumar et al. 2022): a head that already separates
        # the classes sends useful gradients into the body from the first step, where a random head
        # first distorts the pretrained features it has not learnt to read. On 200 sentences
        # x 2 epochs this is the difference between collapse and beating the probe.
        install(recipe, probe)

    forward = model
    if dist.world > 1:
        # DDP broadcasts rank 0's weights and averages gradients; each process gets its own dropout.
        forward = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(opts.seed + 7919 * dist.rank)
    batch_size = opts.batch_size or (16 if len(train) < SMALL_TRAIN else 32)
    epochs = 0 if opts.strategy == "probe" else opts.max_epochs if opts.epochs == "auto" else int(opts.epochs)
    rates = _rates(opts, recipe)
    params, groups = _param_groups(model, recipe, rates, opts.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    batching = dict(batch_size=batch_size, world=dist.world, per_rank=recipe.min_batch)
    steps_per_epoch = len(_global_batches(len(train), list(range(len(train))), **batching))
    total_steps = steps_per_epoch * epochs
    warmup = int(total_steps * opts.warmup_ratio)

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero (at the cap for --epochs auto)
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
    best = _Best(select, state)
    if history:  # resumed: the best epoch so far is on disk beside the state
        best.restore_record(history)

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

    stopped = None
    for epoch in range(start_epoch, epochs):
        if opts.epochs == "auto" and best.epoch and epoch - best.epoch >= opts.patience:
            stopped = f"no better {select} for {opts.patience} epochs after epoch {best.epoch}"
            break
        recipe.train_mode(opts.freeze_backbone)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(opts.seed * 1000 + epoch)).tolist()
        first = start_step if epoch == start_epoch else 0
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{epochs if opts.epochs != 'auto' else f'auto, at most {epochs}'}",
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
            loss = torch.nn.functional.cross_entropy(logits, targets[idx], weight=loss_weight)
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
            logits = metrics.pop("logits")
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen), **metrics})
            improved = best.offer(epoch + 1, metrics, model, logits)
            log.info(
                "epoch %d/%s: train loss %.4f, val accuracy %.4f, macro-F1 %.4f, val loss %.4f (%d samples)%s",
                epoch + 1,
                epochs if opts.epochs != "auto" else "auto",
                loss_sum / max(1, seen),
                metrics["accuracy"],
                metrics["macro_f1"],
                metrics["loss"],
                len(val),
                " (best so far)" if improved else "",
            )
            checkpoint(epoch + 1, 0)
        dist.barrier()
    train_seconds = time.perf_counter() - started
    if not dist.main:  # rank 0 writes the artifact; the others wait for it
        dist.barrier()
        return open_artifact(out)

    kept, why, kept_logits = _choose(opts, best, probe, select, recipe, initial, stopped, history)
    scores = _scores(kept_logits, recipe, labels)
    for warning in scores["warnings"]:
        log.warning("validation: %s", warning)
    model.eval()

    with ArtifactWriter(out, force=force, inputs=inputs) as writer:
        weights_file = writer.add("weights", "model.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_file))
        parts = recipe.write(writer)
        probe_record = None
        if probe is not None:
            probe_record = {
                **{k: probe["metrics"][k] for k in ("accuracy", "accuracy_ci95", "macro_f1")},
                "train_samples": probe["train_samples"],
                "l2": probe["l2"],
                "seconds": probe["seconds"],
            }
        artifact = writer.finish(
            "checkpoint",
            {
                **parts,
                "labels": labels,
                "precision": "fp32",
                "parents": [],
                "training": {
                    **{k: v for k, v in asdict(opts).items() if k not in ("progress", "extra", "resume")},
                    "lr": rates["body"],
                    "recipe": {
                        "body_lr": rates["body"],
                        "head_lr": rates["head"],
                        "layer_decay": rates["decay"],
                        "batch_size": batch_size,
                        "epochs_planned": epochs,
                        "head_init": "linear probe (LP-FT)"
                        if probe is not None and opts.head_init == "probe"
                        else "random (small normal)",
                        "batchnorm_statistics": (
                            "pretrained, fixed (small training set)"
                            if getattr(recipe, "frozen_statistics", False)
                            else None
                        ),
                        "class_weights": None if weights is None else [round(float(w), 4) for w in weights],
                    },
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
                    "selection": {
                        "metric": select,
                        "kept": kept,
                        "best_epoch": best.epoch,
                        "epochs_run": len(history),
                        "stopped_early": stopped,
                        "why": why,
                    },
                    "probe": probe_record,
                },
                "metrics": {
                    "accuracy": scores["accuracy"],
                    "accuracy_ci95": scores["accuracy_ci95"],
                    "macro_f1": scores["macro_f1"],
                    "val_loss": scores["loss"],
                    "val_samples": len(val),
                    "per_class": scores["per_class"],
                    "confusion": scores["confusion"],
                    "warnings": scores["warnings"],
                    "measured_with": "torch-eager fp32",
                },
            },
        )
    state.clear()
    dist.barrier()
    return artifact


def _rates(opts: FinetuneOptions, recipe: Any) -> dict[str, float]:
    """Learning rates: the body's top layer, the head, and the per-layer decay below the top."""
    if opts.freeze_backbone:
        head = opts.head_lr or opts.lr or 1e-3
        return {"body": 0.0, "head": head, "decay": 1.0}
    body = opts.lr if opts.lr is not None else recipe.DEFAULT_LR
    head = opts.head_lr if opts.head_lr is not None else body * recipe.HEAD_LR_MULT
    decay = opts.layer_decay if opts.layer_decay is not None else recipe.LAYER_DECAY
    return {"body": body, "head": head, "decay": decay}


def _param_groups(model: Any, recipe: Any, rates: dict[str, float], weight_decay: float) -> tuple[list, list]:
    """AdamW groups: the head at its rate, each body layer at the top rate times decay^(depth from
    the top). No weight decay on biases and normalisation scales (LayerNorm, BatchNorm): they are
    not weights that overfit, and decaying a norm's scale shrinks the activations it exists to set."""
    import torch

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
    norm_scales = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, norms)}
    head = {id(p) for p in recipe.head.parameters()}
    top = recipe.num_layers + 1
    grouped: dict[tuple[float, float], list[Any]] = {}
    for name, param in params:
        if id(param) in head:
            lr = rates["head"]
        else:
            lr = rates["body"] * rates["decay"] ** (top - min(top, recipe.layer_of(name)))
        decay = 0.0 if name.endswith("bias") or name in norm_scales else weight_decay
        grouped.setdefault((lr, decay), []).append(param)
    groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in sorted(grouped.items())]
    return params, groups


class _Best:
    """The best epoch so far by the selection metric (ties: the lower validation loss), its weights
    kept in memory and beside the resumable state, so that an interrupted run keeps them too."""

    def __init__(self, metric: str, state: Any) -> None:
        self.metric, self.state = metric, state
        self.epoch = 0
        self.metrics: dict[str, float] | None = None
        self.weights: dict[str, Any] | None = None
        self.logits: Any = None

    def _better(self, metrics: dict[str, float]) -> bool:
        if self.metrics is None:
            return True
        ours, theirs = metrics[self.metric], self.metrics[self.metric]
        return ours > theirs + 1e-12 or (abs(ours - theirs) <= 1e-12 and metrics["loss"] < self.metrics["loss"])

    def offer(self, epoch: int, metrics: dict[str, float], model: Any, logits: Any) -> bool:
        if not self._better(metrics):
            return False
        self.epoch, self.metrics, self.logits = epoch, dict(metrics), logits
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.state.save_best(self.weights, epoch, logits)
        return True

    def restore_record(self, history: list[dict[str, Any]]) -> None:
        saved = self.state.load_best()
        if saved is not None:
            self.weights, self.epoch, self.logits = saved
            self.metrics = next(h for h in history if h["epoch"] == self.epoch)


def _choose(
    opts: FinetuneOptions,
    best: _Best,
    probe: dict[str, Any] | None,
    select: str,
    recipe: Any,
    initial: dict[str, Any] | None,
    stopped: str | None,
    history: list[dict[str, Any]],
) -> tuple[str, str, Any]:
    """Which model the checkpoint keeps (the best epoch, or the probe), why, and its validation logits."""
    from edgeptm.metrics import wilson_interval

    model = recipe.model
    if opts.strategy == "probe" or best.weights is None:
        install(recipe, probe)
        return "probe", "--strategy probe: logistic regression on the frozen pretrained features", probe["val_logits"]
    model.load_state_dict(best.weights)
    last = history[-1]["epoch"]
    why = f"epoch {best.epoch} of {last} had the best validation {select} ({best.metrics[select]:.4f})"
    if stopped:
        why += f"; stopped early: {stopped}"
    if probe is None:
        return "finetune", why, best.logits
    tuned, probed = best.metrics[select], probe["metrics"][select]
    n = len(recipe.val)
    low, high = wilson_interval(round(best.metrics["accuracy"] * n), n)
    resolution = (high - low) / 2
    close = abs(tuned - probed) < resolution
    note = (
        f"; the validation split ({n} samples, accuracy resolved to about ±{100 * resolution:.0f} points) "
        "cannot tell the fine-tune and the probe apart"
        if close
        else ""
    )
    if probed > tuned:
        log.warning(
            "the linear probe scores better than fine-tuning (%s %.4f vs %.4f)%s",
            select,
            probed,
            tuned,
            "; keeping the probe (--strategy auto)" if initial is not None else "; pass --strategy auto to keep it",
        )
        if initial is not None:
            model.load_state_dict(initial)
            install(recipe, probe)
            return (
                "probe",
                f"the linear probe's validation {select} ({probed:.4f}) beat the best epoch's ({tuned:.4f}, "
                f"epoch {best.epoch}){note}",
                probe["val_logits"],
            )
    else:
        log.info("fine-tuning beats the linear probe (%s %.4f vs %.4f)%s", select, tuned, probed, note)
    return "finetune", why + f"; linear probe {select} {probed:.4f}" + note, best.logits


def _scores(logits: Any, recipe: Any, labels: list[str]) -> dict[str, Any]:
    from edgeptm.metrics import detailed_metrics

    index = {name: i for i, name in enumerate(labels)}
    truth = [index[label] for label in recipe.val.labels]
    scores = detailed_metrics(logits, truth, labels)
    scores["loss"] = log_loss(logits, truth)
    return scores
