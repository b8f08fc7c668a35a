"""Fine-tune a causal LM on the user's examples: setup -> (LoRA) train -> evaluate -> keep best -> save.

One readable recipe, the generative sibling of edgeptm.finetuning:

- LoRA (peft) by default: rank ``lora_rank`` adapters on every attention and MLP projection, the
  pretrained weights frozen; ``full`` trains every weight instead. The kept adapter is merged into
  the weights when the checkpoint is written (the checkpoint is an ordinary model, exported like the
  pretrained one) and its own small file is kept beside them;
- the loss is on completion tokens only (assistant turns for chat data; every token of plain text);
- the validation loss and perplexity are measured before training (the base model: the
  manifest's ``perplexity_before``) and after every epoch, and the best epoch's weights are kept;
- resume, progress and torchrun (data parallel, gloo) work as for classifiers.

Learning rates: 2e-4 for LoRA, 2e-5 for full fine-tuning, linear warm-up then linear decay - the
usual ranges for adapters and for small decoders respectively.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact, ArtifactWriter, check_out_dir, open_artifact
from edgeptm.errors import DataError, UsageError
from edgeptm.models.causal import checkpoint_manifest, context_length, model_record, save_lm
from edgeptm.tasks.generation import LMDataset, encode_example, read_lm_data
from edgeptm.training import _distributed, _TrainState

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# the same projections where a family fuses or names them otherwise (Phi-3's qkv_proj and gate_up_proj,
# GPT-2's c_attn, c_proj and c_fc): without --lora-targets, every one of these names the model has
LORA_TARGETS_FUSED = ("qkv_proj", "gate_up_proj", "c_attn", "c_proj", "c_fc")
DEFAULT_LR = {"lora": 2e-4, "full": 2e-5}
DEFAULT_BATCH = 8
DEFAULT_MAX_LENGTH = 512  # tokens per example (prompt + completion); longer ones are cut
CALIBRATION_EXAMPLES = 256  # training examples carried for quantization's calibration


def _split(train: LMDataset, fraction: float, seed: int) -> tuple[LMDataset, LMDataset]:
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(order) * fraction)))
    if len(order) - n_val < 1:
        raise DataError(f"{train.source}: {len(train)} examples are too few to hold out a validation split; pass --val")
    return train.subset(sorted(order[n_val:])), train.subset(sorted(order[:n_val]))


def encode_all(data: LMDataset, tokenizer: Any, max_length: int) -> list[tuple[list[int], list[int]]]:
    encoded = [encode_example(e, tokenizer, max_length) for e in data.examples]
    kept = [e for e in encoded if e is not None]
    if not kept:
        raise DataError(f"{data.source}: no example has a completion token within {max_length} tokens")
    if len(kept) < len(encoded):
        log.warning(
            "%s: %d examples have nothing to learn within %d tokens; skipped",
            data.source,
            len(encoded) - len(kept),
            max_length,
        )
    return kept


def _batch(items: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (i, lab) in enumerate(items):
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(i)] = 1
    return ids, mask, labels


def _token_loss(model: Any, items: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, int]:
    """Summed next-token cross-entropy over the labelled positions, and their count."""
    import torch

    ids, mask, labels = _batch(items, pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((target != -100).sum())


def evaluate(
    model: Any, encoded: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 8
) -> dict[str, Any]:
    """Validation loss (mean NLL per completion token) and perplexity."""
    import torch

    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths pad less
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            loss, n = _token_loss(model, [encoded[i] for i in order[start : start + batch_size]], pad_id)
            total += float(loss)
            count += n
    mean = total / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": count}


def finetune_lm(spec: Any, opts: Any, out: Path, force: bool, inputs: list[str | None]) -> Artifact:
    """Fine-tune the causal LM ``spec`` on ``opts.train``; write a checkpoint artifact to ``out``."""
    import torch
    from tqdm.auto import tqdm

    check_out_dir(out, force, inputs)
    if opts.freeze_backbone or opts.strategy == "probe":
        raise UsageError(
            "--freeze-backbone and --strategy probe are for classifiers; a generator trains LoRA or --full"
        )
    train = read_lm_data(opts.train)
    val = read_lm_data(opts.val) if opts.val else None
    how = f"--val {opts.val}" if opts.val else f"seeded {opts.val_fraction:.0%} split of --train (seed {opts.seed})"
    if val is None:
        train, val = _split(train, opts.val_fraction, opts.seed)
    for name, limit in (("train", opts.train_limit), ("val", opts.val_limit)):
        data = train if name == "train" else val
        if limit is not None and limit < len(data):
            order = list(range(len(data)))
            random.Random(opts.seed).shuffle(order)
            subset = data.subset(sorted(order[:limit]))
            train, val = (subset, val) if name == "train" else (train, subset)
    dist = _distributed()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)

    tokenizer = spec.load_tokenizer()
    model = spec.load_model()
    limit = context_length(model.config)
    max_length = opts.max_length or min(DEFAULT_MAX_LENGTH, limit)
    if max_length > limit:
        raise UsageError(f"--max-length {max_length} exceeds {spec.name}'s context ({limit} tokens)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_enc = encode_all(train, tokenizer, max_length)
    val_enc = encode_all(val, tokenizer, max_length)
    before = evaluate(model, val_enc, pad_id) if dist.main else None
    if before is not None:
        log.info(
            "base model: validation loss %.4f, perplexity %.3f (%d tokens)",
            before["loss"],
            before["perplexity"],
            before["tokens"],
        )

    method = "full" if opts.full else "lora"
    lora = None
    if method == "lora":
        model, lora = _with_lora(model, opts)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    lr = opts.lr or DEFAULT_LR[method]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0 if method == "lora" else opts.weight_decay)
    batch_size = opts.batch_size or DEFAULT_BATCH
    epochs = opts.max_epochs if opts.epochs == "auto" else int(opts.epochs)
    per_rank = max(1, batch_size // dist.world)
    steps_per_epoch = max(1, math.ceil(len(train_enc) / batch_size))
    total = steps_per_epoch * epochs
    warmup = int(total * opts.warmup_ratio)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    forward = model
    if dist.world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(model)
    state = _TrainState(out)
    start_epoch, start_step, history, resumed_from = 0, 0, [], None
    fingerprint = _fingerprint(opts, method, dist.world)
    if opts.resume and state.exists():
        found = state.info()["fingerprint"]
        if found != fingerprint:
            changed = sorted(k for k in fingerprint if found.get(k) != fingerprint[k])
            raise UsageError(
                f"--resume: the interrupted run had other settings ({', '.join(changed)}); rerun them, "
                "or drop --resume to start over"
            )
        info = state.load(_Trainable(model), optimizer, scheduler, scores=("loss", "perplexity"))
        start_epoch, start_step, history = info["epoch"], info["step"], info["history"]
        resumed_from = info["global_step"]
        log.info("resuming at epoch %d, batch %d", start_epoch + 1, start_step)
    elif dist.main:
        state.clear()
    dist.barrier()
    best = min(history, key=lambda h: h["loss"]) if history else None
    started = time.perf_counter()
    stopped = None
    for epoch in range(start_epoch, epochs):
        if opts.epochs == "auto" and best and epoch - best["epoch"] >= opts.patience:
            stopped = f"no better validation loss for {opts.patience} epochs after epoch {best['epoch']}"
            break
        model.train()
        order = list(range(len(train_enc)))
        random.Random(opts.seed * 1000 + epoch).shuffle(order)
        first = start_step if epoch == start_epoch else 0
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            disable=not (opts.progress and dist.main),
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )
        loss_sum, tokens = 0.0, 0
        for step in range(first, steps_per_epoch):
            batch = order[step * batch_size : (step + 1) * batch_size]
            mine = batch[dist.rank :: dist.world][:per_rank] or batch[:1]
            loss, n = _token_loss(forward, [train_enc[i] for i in mine], pad_id)
            (loss / max(n, 1)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, tokens = loss_sum + loss.item(), tokens + n
            bar.set_postfix(loss=f"{loss_sum / max(tokens, 1):.4f}", refresh=False)
            bar.update(1)
            if dist.main and (step + 1) % opts.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                state.save(
                    _Trainable(model),
                    optimizer,
                    scheduler,
                    _info(epoch, step + 1, epoch * steps_per_epoch + step + 1, history, fingerprint),
                )
        bar.close()
        if dist.main:
            scores = evaluate(model, val_enc, pad_id)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(tokens, 1), **scores}
            history.append(record)
            if best is None or scores["loss"] < best["loss"]:
                best = record
                state.save_best({k: v.detach().clone() for k, v in _trainable_state(model).items()}, epoch + 1, [])
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %.4f, perplexity %.3f%s",
                epoch + 1,
                epochs,
                record["train_loss"],
                scores["loss"],
                scores["perplexity"],
                " (best so far)" if best is record else "",
            )
            state.save(
                _Trainable(model),
                optimizer,
                scheduler,
                _info(epoch + 1, 0, (epoch + 1) * steps_per_epoch, history, fingerprint),
            )
        dist.barrier()
    seconds = time.perf_counter() - started
    if not dist.main:
        dist.barrier()
        return open_artifact(out)
    kept = state.load_best()
    if kept is not None and best is not None:
        weights, epoch_kept, _ = kept
        model.load_state_dict(weights, strict=False)
    final = evaluate(model, val_enc, pad_id)
    training = {
        **{k: v for k, v in asdict(opts).items() if k not in ("progress", "extra", "resume")},
        "method": method,
        "lora": lora,
        "lr": lr,
        "batch_size": batch_size,
        "max_length": max_length,
        "epochs_planned": epochs,
        "trainable_parameters": trainable,
        "train_examples": len(train),
        "val_examples": len(val),
        "data_form": train.form,
        "validation": how,
        "history": history,
        "stopped": stopped,
        "resumed_from_step": resumed_from,
        "world_size": dist.world,
        "train_seconds": round(seconds, 1),
        "selection": {
            "kept": f"epoch {min(history, key=lambda h: h['loss'])['epoch']}" if history else "the base model",
            "why": "lowest validation loss",
        },
    }
    metrics = {
        "perplexity": final["perplexity"],
        "perplexity_before": before["perplexity"] if before else None,
        "val_loss": final["loss"],
        "val_tokens": final["tokens"],
        "perplexity_on": "completion tokens of the validation examples",
    }
    artifact = _write(spec, opts, out, force, inputs, model, lora, tokenizer, train, val, training, metrics)
    dist.barrier()
    state.clear()
    return artifact


def _info(epoch: int, step: int, done: int, history: list[dict[str, Any]], fingerprint: dict) -> dict[str, Any]:
    return {"epoch": epoch, "step": step, "global_step": done, "fingerprint": fingerprint, "history": history}


def _fingerprint(opts: Any, method: str, world: int) -> dict[str, Any]:
    """What must be equal for an interrupted run to be resumed: the settings and the data's bytes."""
    from edgeptm.artifacts import sha256_file

    keep = (
        "model",
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "seed",
        "val_fraction",
        "train_limit",
        "val_limit",
        "weight_decay",
        "warmup_ratio",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_targets",
        "patience",
        "max_epochs",
    )
    data = {name: sha256_file(Path(getattr(opts, name))) for name in ("train", "val") if getattr(opts, name)}
    return {**{k: getattr(opts, k) for k in keep}, "method": method, "world_size": world, **data}


def _trainable_state(model: Any) -> dict[str, Any]:
    """The weights training changes (LoRA: the adapters; full: every parameter, a tied one once)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


class _Trainable:
    """The model as the resumable state sees it: its trained weights only (a LoRA state is the
    adapters, megabytes, not the frozen model; tied embeddings are saved once)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return _trainable_state(self.model)

    def load_state_dict(self, weights: dict[str, Any]) -> None:
        expected = set(_trainable_state(self.model))
        if set(weights) != expected:
            raise RuntimeError(f"the state holds {len(weights)} tensors, this run trains {len(expected)}")
        self.model.load_state_dict(weights, strict=False)


def _with_lora(model: Any, opts: Any) -> tuple[Any, dict[str, Any]]:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UsageError("LoRA needs the peft package (pip install peft), or train every weight with --full") from None
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if opts.lora_targets:
        targets = [t for t in opts.lora_targets.split(",") if t]
    else:
        targets = [t for t in (*LORA_TARGETS, *LORA_TARGETS_FUSED) if t in present]
        if not targets:
            known = ", ".join((*LORA_TARGETS, *LORA_TARGETS_FUSED))
            raise UsageError(f"LoRA: the model has none of the usual projections ({known}): use --lora-targets")
    missing = [t for t in targets if t not in present]
    if missing or not targets:
        raise UsageError(f"--lora-targets: the model has no module named {', '.join(missing) or '(none given)'}")
    if opts.lora_rank < 1:
        raise UsageError(f"--lora-rank must be >= 1, got {opts.lora_rank}")
    alpha = opts.lora_alpha or 2 * opts.lora_rank
    config = LoraConfig(
        r=opts.lora_rank,
        lora_alpha=alpha,
        lora_dropout=opts.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config), {
        "rank": opts.lora_rank,
        "alpha": alpha,
        "dropout": opts.lora_dropout,
        "target_modules": targets,
    }


def _write(
    spec: Any,
    opts: Any,
    out: Path,
    force: bool,
    inputs: list[Any],
    model: Any,
    lora: dict[str, Any] | None,
    tokenizer: Any,
    train: LMDataset,
    val: LMDataset,
    training: dict[str, Any],
    metrics: dict[str, Any],
) -> Artifact:
    from safetensors.torch import save_file

    with ArtifactWriter(out, force=force, inputs=inputs) as writer:
        if lora is not None:
            adapter = {k: v.detach().contiguous() for k, v in _trainable_state(model).items()}
            save_file(adapter, str(writer.add("lora_adapter", "lora/adapter.safetensors")))
            model = model.merge_and_unload()  # the adapter folded into the weights: an ordinary model
        model.eval()
        save_lm(model, tokenizer, writer)
        val.to_jsonl(writer.add("val_data", "val.jsonl"))
        order = list(range(len(train)))
        random.Random(opts.seed + 1).shuffle(order)
        train.subset(sorted(order[:CALIBRATION_EXAMPLES])).to_jsonl(writer.add("calib_data", "calib.jsonl"))
        record = model_record(spec.name, model)
        return writer.finish("checkpoint", checkpoint_manifest(tokenizer, model, record, training, metrics))
