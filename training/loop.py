"""The training loop, top to bottom: data, model, optimizer, schedule, steps, validation, checkpoints.

Run it in-process with ``train(config)`` or under torchrun (one process per GPU) through
``linkscan train``; the caller passes rank and world size (this module reads no environment).
"""
from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.checkpoint import latest_checkpoint, load_model, load_training_state, save_checkpoint
from training.configs import TrainConfig, model_shape
from training.data import (
    ExampleStream, collate, count_too_long, make_loader, recall_at_k, split_dataset, validation_examples,
)
from training.model import ScannerModel

log = logging.getLogger("linkscan.training")


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE over valid unit positions with pos_weight = negatives / positives of this batch (the paper's loss).

    Returns (loss, pos_weight) as tensors; no host synchronisation, so micro-batches queue freely.
    """
    weight = mask.float()
    positives = (labels * weight).sum()
    pos_weight = ((weight.sum() - positives) / positives.clamp(min=1.0)).clamp(min=1.0).detach()
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels, weight=weight, pos_weight=pos_weight,
                                              reduction="sum")
    return loss / weight.sum().clamp(min=1.0), pos_weight


def constant_bce(labels: torch.Tensor, mask: torch.Tensor) -> float:
    """The lowest ``masked_bce`` a model can reach without looking at the input: one logit for every
    position, log(pos_weight * positives / negatives). A run whose held-out loss stays at this level
    has learned nothing beyond the base rate (nan when a row has no positives or no negatives)."""
    weight = mask.float()
    positives = float((labels * weight).sum())
    negatives = float(weight.sum()) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    pos_weight = max(1.0, negatives / positives)
    logit = math.log(pos_weight * positives / negatives)
    return float(masked_bce(torch.full(labels.shape, logit), labels.float(), mask)[0])


def build_model(config: TrainConfig, device: torch.device) -> ScannerModel:
    """From a hub id or folder (head may be fresh) or from a named shape; weights are fp32 (master copy)."""
    torch.manual_seed(config.seed)
    if config.model:
        return load_model(config.model, backend=config.backend, device=str(device), require_head=False).train()
    return ScannerModel(model_shape(config.config), backend=config.backend, device=device).train()


def configure_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (dim >= 2) only, not on norms, biases, A_log, D, dt_bias."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak lr: linear warm-up over warmup_fraction of the steps, then cosine to min_lr."""
    warmup = max(1, math.ceil(config.warmup_fraction * config.max_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
    floor = config.min_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def autocast(config: TrainConfig, device: torch.device):
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def accumulate_gradients(model: torch.nn.Module, micro_batches: list[dict], config: TrainConfig,
                         device: torch.device) -> dict:
    """Forward/backward over one rank's micro-batches of one optimizer step (loss scaled by 1/len).

    Under DDP, gradients are all-reduced (averaged over ranks) on the last micro-batch only.
    """
    steps = len(micro_batches)
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    total_loss, tokens, weights = 0.0, 0, 0.0
    for index, batch in enumerate(micro_batches):
        local_only = is_ddp and index < steps - 1
        with model.no_sync() if local_only else nullcontext():
            with autocast(config, device):
                logits = model(batch["input_ids"].to(device, non_blocking=True),
                               batch["positions"].to(device, non_blocking=True))
            loss, pos_weight = masked_bce(logits, batch["labels"].to(device, non_blocking=True),
                                          batch["mask"].to(device, non_blocking=True))
            (loss / steps).backward()
        total_loss = total_loss + loss.detach() / steps
        weights = weights + pos_weight / steps
        tokens += int(batch["n_tokens"])
    return {"loss": float(total_loss), "tokens": tokens, "pos_weight": float(weights)}


@torch.no_grad()
def validate(model: ScannerModel, examples: list, config: TrainConfig, device: torch.device) -> dict:
    """Held-out loss and recall@k of the positives, with what a model blind to the input gets beside
    them: the best constant's loss and the random ranking's expected recall."""
    was_training = model.training
    model.eval()
    losses, constant_losses = [], []
    recalls, random_recalls = {k: [] for k in config.recall_k}, {k: [] for k in config.recall_k}
    for example in examples:
        batch = collate([example])
        with autocast(config, device):
            logits = model(batch["input_ids"].to(device), batch["positions"].to(device))
        loss, _ = masked_bce(logits, batch["labels"].to(device), batch["mask"].to(device))
        losses.append(float(loss))
        constant_losses.append(constant_bce(batch["labels"], batch["mask"]))
        scores, labels = logits[0].float().cpu().numpy(), np.asarray(example.labels)
        for k in config.recall_k:
            recalls[k].append(recall_at_k(scores, labels, k))
            random_recalls[k].append(min(1.0, k / len(labels)))
    model.train(was_training)
    metrics = {"val_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_constant_loss": float(np.nanmean(constant_losses)) if examples else float("nan"),
               "val_examples": len(examples)}
    for k in config.recall_k:
        metrics[f"val_recall@{k}"] = float(np.nanmean(recalls[k])) if examples else float("nan")
        metrics[f"val_random_recall@{k}"] = float(np.mean(random_recalls[k])) if examples else float("nan")
    return metrics


class RunFolderError(ValueError):
    """The run folder holds another run, and neither resuming nor overwriting it was asked for."""


def claim_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one (its checkpoints and metrics would mix with
    this one's), unless ``overwrite``: then the old run's files are removed first."""
    import shutil

    existing = [out / name for name in ("checkpoints", "metrics.jsonl", "train_config.json") if (out / name).exists()]
    if not existing:
        return
    if not overwrite:
        latest = latest_checkpoint(out)
        at = f" (latest checkpoint {latest.name})" if latest is not None else ""
        raise RunFolderError(
            f"{out}: already holds a training run{at}; pass --resume to continue it, --overwrite to start "
            "it again from scratch, or a new --out"
        )
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def open_training_data(config: TrainConfig):
    """The dataset version to train on, checked before any step: every shard's size and sha256
    against its manifest (a damaged file is named), and complete unless ``allow_partial``."""
    from pipeline.store import StoreError, open_dataset

    dataset = open_dataset(config.dataset)
    if not dataset.manifest.get("complete", True) and not config.allow_partial:
        pending = sum((dataset.manifest.get("pending_chunks") or {}).values())
        raise StoreError(
            f"{dataset.path}: version {dataset.version} is partial ({pending} chunks were still pending when it was "
            "published with allow_partial); train on a complete version, or pass --allow-partial to use it anyway"
        )
    dataset.verify()
    return dataset


def train(config: TrainConfig, *, rank: int = 0, world_size: int = 1, local_rank: int = 0,
          resume: bool = False, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Train ``config.max_steps`` optimizer steps; returns the last metrics and the checkpoint path.

    ``resume`` continues from the run folder's latest checkpoint (weights, optimizer, schedule,
    step and data position); without it, a folder holding a run is refused, unless ``overwrite``
    (start again from scratch). ``stop_after`` ends the process after that many steps (as a kill
    would), leaving the checkpoint written at that step.
    """

    out = Path(config.out)
    is_main = rank == 0
    device = torch.device(config.device if config.device != "cuda" else f"cuda:{local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    distributed = world_size > 1
    if distributed and not torch.distributed.is_initialized():
        raise RuntimeError("world_size > 1 needs torch.distributed initialised first (run under torchrun)")

    # -- data ---------------------------------------------------------------------------------
    dataset = open_training_data(config)
    split = split_dataset(dataset.shard_paths("examples"), config.validation, config.validation_shards,
                          config.validation_fraction)
    train_files, val_files = split.train_files, split.validation_files
    max_tokens = min(config.max_seq_tokens, max(config.length_buckets))
    buckets = [b for b in config.length_buckets if b < max_tokens] + [max_tokens]
    accum = max(1, config.tokens_per_step // (config.micro_batch_tokens * world_size))
    held_out = (validation_examples(val_files, config.validation_examples, max_tokens, split.validation_filter())
                if is_main else [])
    if is_main and not resume:
        claim_run_folder(out, overwrite=overwrite)

    # -- model, optimizer, schedule, resume ---------------------------------------------------
    model = build_model(config, device)
    optimizer = configure_optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    step, micro_batches_done = 0, 0
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        state = load_training_state(checkpoint, model, optimizer, scheduler)
        step, micro_batches_done = state["step"], state["data"]["micro_batches_per_rank"]
        if state["data"]["world_size"] != world_size:
            log.warning("%s: written by %d process(es), resumed by %d: the data order differs from an uninterrupted run",
                        checkpoint, state["data"]["world_size"], world_size)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    ddp_model = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = ExampleStream(train_files, micro_batch_tokens=config.micro_batch_tokens, buckets=buckets,
                           seed=config.seed, shuffle_buffer=config.shuffle_buffer, rank=rank,
                           world_size=world_size, skip_micro_batches=micro_batches_done,
                           skip_documents=split.held_out or frozenset())
    batches = iter(make_loader(stream, num_workers=config.num_workers))

    summary = {
        "dataset": str(dataset.path), "train_shards": len(train_files), "validation": split.how,
        "accumulation_steps": accum, "world_size": world_size,
        "parameters": model.num_parameters(), "resumed_from_step": step,
        "drops": {"too_long": count_too_long(train_files, max_tokens, split.train_filter()),
                  "validation_too_long": count_too_long(val_files, max_tokens, split.validation_filter())},
    }
    if is_main:
        log.info("training: %s", json.dumps(summary))
    metrics_file = open(out / "metrics.jsonl", "a") if is_main else None
    progress = None
    if is_main and config.progress:
        from tqdm import tqdm

        progress = tqdm(total=config.max_steps, initial=step, desc="train", unit="step", mininterval=2.0)

    # -- the loop -----------------------------------------------------------------------------
    metrics: dict = {}
    last_checkpoint = checkpoint
    while step < config.max_steps:
        started = time.perf_counter()
        micro = [next(batches) for _ in range(accum)]
        result = accumulate_gradients(ddp_model, micro, config, device)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        micro_batches_done += accum
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        metrics = {
            "step": step, "loss": result["loss"], "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm), "pos_weight": result["pos_weight"],
            "tokens": result["tokens"] * world_size,  # approximate: other ranks' counts are similar
            "tokens_per_s": result["tokens"] * world_size / elapsed, "seconds": elapsed,
        }
        if is_main and held_out and (step % config.validate_every == 0 or step == config.max_steps):
            metrics.update(validate(model, held_out, config, device))
        if step % config.checkpoint_every == 0 or step == config.max_steps or step == stop_after:
            if is_main:
                trainer_state = {"data": {"micro_batches_per_rank": micro_batches_done, "world_size": world_size},
                                 "metrics": metrics, "config": config.model_dump(mode="json")}
                last_checkpoint = save_checkpoint(out, step, model, optimizer, scheduler, trainer_state)
            if distributed:
                torch.distributed.barrier()
        if is_main:
            if step % config.log_every == 0 or "val_loss" in metrics:
                metrics_file.write(json.dumps(metrics) + "\n")
                metrics_file.flush()
            if progress is not None:
                progress.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
                progress.update(1)
        if stop_after is not None and step >= stop_after:
            break
    if progress is not None:
        progress.close()
    if metrics_file is not None:
        metrics_file.close()
    return {**summary, "step": step, "last_metrics": metrics, "checkpoint": str(last_checkpoint) if last_checkpoint else None}
