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

from linkscan.training.checkpoint import (drop_metrics_after, latest_checkpoint, load_model, load_training_state,
                                          save_checkpoint)
from linkscan.training.configs import TrainConfig, model_shape
from linkscan.training.data import (
    ExampleStream, collate, consumer_rows, count_too_long, make_loader, pack_units, recall_at_k, split_dataset,
    validation_examples,
)
from linkscan.training.model import ScannerModel

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
    return ScannerModel(model_shape(config.shape), backend=config.backend, device=device).train()


class TrainingModel(torch.nn.Module):
    """What the optimizer trains: the scanner and, with ``match_loss_weight`` > 0, a training-only
    ``match_head`` (``Linear(d_model, 1)`` at every token) for the match objective
    (``Example.match_labels``). Only the scanner is exported; the match head is kept in
    ``optimizer.pt`` so that a resumed run continues with it.

    ``forward`` returns the unit logits (batch, n_positions) and the match logits (batch, length).
    """

    def __init__(self, scanner: ScannerModel) -> None:
        super().__init__()
        self.scanner = scanner
        self.match_head = torch.nn.Linear(scanner.shape.d_model, 1, device=scanner.binary_head.weight.device)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                seq_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.scanner.hidden_states(input_ids, seq_idx)
        return self.scanner.head(hidden, positions), self.match_head(hidden).squeeze(-1).float()


def graph_forward(model: torch.nn.Module, config: TrainConfig, device: torch.device, units: int) -> torch.nn.Module:
    """``model`` with its forward and backward captured as CUDA graphs for packed rows of
    ``micro_batch_tokens`` (one fixed shape), replayed at every micro-batch: one launch instead of
    thousands of small kernel launches, which bound the step time of small models."""
    length = config.micro_batch_tokens
    sample = (torch.zeros((1, length), dtype=torch.long, device=device),
              torch.zeros((1, units), dtype=torch.long, device=device),
              torch.zeros((1, length), dtype=torch.int32, device=device))
    with autocast(config, device):
        graphed = torch.cuda.make_graphed_callables(model, sample, allow_unused_input=True)
    for parameter in model.parameters():  # see clear_gradients
        if parameter.requires_grad and parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    return graphed


def clear_gradients(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Zero the gradients for the next optimizer step.

    Under CUDA graphs they stay allocated and are zeroed in place: the graphed backward hands
    autograd its static gradient buffers, and a parameter whose ``.grad`` is None adopts the
    buffer itself, which the next micro-batch's replay then overwrites, so accumulating two
    micro-batches gave twice the second one's gradient (pytorch/pytorch#181723; caught by
    tests/test_training_gpu.py). With ``.grad`` allocated, autograd adds into it instead.
    """
    optimizer.zero_grad(set_to_none=not config.cuda_graphs)


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
        # no weight-cast cache: CUDA graphs refuse it, and each weight is cast once per forward anyway
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not config.cuda_graphs)
    return nullcontext()


def accumulate_gradients(model: torch.nn.Module, micro_batches: list[dict], config: TrainConfig,
                         device: torch.device) -> dict:
    """Forward/backward over one rank's micro-batches of one optimizer step (loss scaled by 1/len).

    ``model`` returns unit logits, or (unit logits, match logits) (``TrainingModel``); the match
    loss is then added with weight ``match_loss_weight``. Under DDP, gradients are all-reduced
    (averaged over ranks) on the last micro-batch only. Nothing here waits for the GPU: the loss
    and pos_weight come back as device tensors, and ``tokens`` is counted on the host.
    """
    steps = len(micro_batches)
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    total_loss = torch.zeros((), device=device)
    total_match = torch.zeros((), device=device)
    weights = torch.zeros((), device=device)
    tokens = 0
    for index, batch in enumerate(micro_batches):
        local_only = is_ddp and index < steps - 1
        inputs = {name: value.to(device, non_blocking=True) for name, value in batch.items() if name != "n_tokens"}
        with model.no_sync() if local_only else nullcontext():
            with autocast(config, device):
                output = model(inputs["input_ids"], inputs["positions"], inputs.get("seq_idx"))
            logits, match_logits = output if isinstance(output, tuple) else (output, None)
            loss, pos_weight = masked_bce(logits, inputs["labels"], inputs["mask"])
            objective = loss
            if match_logits is not None:
                match_loss, _ = masked_bce(match_logits, inputs["match_labels"], inputs["match_mask"])
                objective = loss + config.match_loss_weight * match_loss
                total_match = total_match + match_loss.detach() / steps
            (objective / steps).backward()
        total_loss = total_loss + loss.detach() / steps
        weights = weights + pos_weight / steps
        tokens += int(batch["n_tokens"])
    return {"loss": total_loss, "match_loss": total_match, "tokens": tokens, "pos_weight": weights}


@torch.no_grad()
def validate(model: ScannerModel, examples: list, config: TrainConfig, device: torch.device) -> dict:
    """Held-out loss and recall@k of the positives, with what a model blind to the input gets beside
    them: the best constant's loss and the random ranking's expected recall.

    Examples go through in padded batches of similar length (at most ``micro_batch_tokens``), each
    scored per example as before; one copy to the host per batch."""
    was_training = model.training
    model.eval()
    losses, constant_losses = [], []
    recalls, random_recalls = {k: [] for k in config.recall_k}, {k: [] for k in config.recall_k}
    order = sorted(examples, key=lambda e: e.n_tokens)
    groups, group = [], []
    for example in order:
        if group and (len(group) + 1) * example.n_tokens > config.micro_batch_tokens:
            groups.append(group)
            group = []
        group.append(example)
    if group:
        groups.append(group)
    for group in groups:
        batch = collate(group)
        with autocast(config, device):
            logits = model(batch["input_ids"].to(device), batch["positions"].to(device))
        labels, mask = batch["labels"].to(device), batch["mask"].to(device)
        row_losses = torch.stack([masked_bce(logits[r:r + 1], labels[r:r + 1], mask[r:r + 1])[0] for r in range(len(group))])
        losses.extend(row_losses.tolist())
        scores = logits.float().cpu().numpy()
        for row, example in enumerate(group):
            n = len(example.labels)
            constant_losses.append(constant_bce(batch["labels"][row:row + 1, :n], batch["mask"][row:row + 1, :n]))
            for k in config.recall_k:
                recalls[k].append(recall_at_k(scores[row, :n], np.asarray(example.labels), k))
                random_recalls[k].append(min(1.0, k / n))
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


class ProgressLines:
    """The step counter for a log (stderr no terminal: a file, CI, a pipe): a ``train: step N of M``
    line every ``interval_s`` seconds and at the last step, where tqdm would redraw one line with
    carriage returns that a log keeps as a single ever-growing line. tqdm's calls, as the loop uses them."""

    def __init__(self, total: int, step: int, interval_s: float = 30.0, clock=time.monotonic) -> None:
        self.total, self.step, self.interval_s, self._clock = total, step, interval_s, clock
        self._postfix = ""
        self._last = clock()

    def set_postfix(self, **values: str) -> None:
        self._postfix = "".join(f", {name} {value}" for name, value in values.items())

    def update(self, steps: int) -> None:
        self.step += steps
        if self.step >= self.total or self._clock() - self._last >= self.interval_s:
            self._last = self._clock()
            log.info("train: step %d of %d%s", self.step, self.total, self._postfix)

    def close(self) -> None:
        pass


def _progress_display(total: int, step: int):
    import sys

    if sys.stderr.isatty():  # the same test tqdm's own disable=None makes
        from tqdm import tqdm

        return tqdm(total=total, initial=step, desc="train", unit="step", mininterval=2.0)
    return ProgressLines(total, step)


def open_training_data(config: TrainConfig):
    """The dataset version to train on, checked before any step: every shard's size and sha256
    against its manifest (a damaged file is named), and complete unless ``allow_partial``."""
    from linkscan.pipeline.store import StoreError, open_dataset

    dataset = open_dataset(config.dataset)
    if not dataset.complete and not config.allow_partial:
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
    if config.pack and config.backend != "mamba_ssm":
        raise ValueError("pack needs the mamba_ssm back end (its kernels restart the state at each packed example)")
    if config.cuda_graphs and (device.type != "cuda" or not config.pack or distributed):
        raise ValueError("cuda_graphs needs one CUDA process and packed rows (pack), which give every micro-batch one shape")

    # -- data ---------------------------------------------------------------------------------
    dataset = open_training_data(config)
    split = split_dataset(dataset.shard_paths("examples"), config.validation, config.validation_shards,
                          config.validation_fraction)
    train_files, val_files = split.train_files, split.validation_files
    max_tokens = min(config.max_seq_tokens, max(config.length_buckets))
    if config.pack:
        max_tokens = min(max_tokens, config.micro_batch_tokens)  # one example never spans two rows
    buckets = [b for b in config.length_buckets if b < max_tokens] + [max_tokens]
    accum = max(1, config.tokens_per_step // (config.micro_batch_tokens * world_size))
    held_out = (validation_examples(val_files, config.validation_examples, max_tokens, split.validation_filter())
                if is_main else [])
    if is_main and not resume:
        claim_run_folder(out, overwrite=overwrite)

    # -- model, optimizer, schedule, resume ---------------------------------------------------
    model = build_model(config, device)
    trained = TrainingModel(model) if config.match_loss_weight > 0 else model
    training_modules = {"match_head": trained.match_head} if trained is not model else {}
    optimizer = configure_optimizer(trained, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    step, micro_batches_done = 0, 0
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        state = load_training_state(checkpoint, model, optimizer, scheduler, training_modules)
        step, micro_batches_done = state["step"], state["data"]["micro_batches_per_rank"]
        if state["data"]["world_size"] != world_size:
            log.warning("%s: written by %d process(es), resumed by %d: the data order differs from an uninterrupted run",
                        checkpoint, state["data"]["world_size"], world_size)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
        if resume:
            drop_metrics_after(out, step if checkpoint is not None else None)
    forward = trained
    if distributed:
        forward = torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None)
    if config.cuda_graphs:
        forward = graph_forward(trained, config, device, pack_units(config.micro_batch_tokens))

    stream = ExampleStream(train_files, micro_batch_tokens=config.micro_batch_tokens, buckets=buckets,
                           seed=config.seed, shuffle_buffer=config.shuffle_buffer, rank=rank,
                           world_size=world_size, skip_micro_batches=micro_batches_done,
                           skip_documents=split.held_out or frozenset(), pack=config.pack,
                           with_match=config.match_loss_weight > 0, relabel_share=config.relabel_share,
                           vocab_size=model.shape.vocab_size)
    batches = iter(make_loader(stream, num_workers=config.num_workers, pin_memory=device.type == "cuda"))
    rows_of = {dataset.path / shard["file"]: shard["rows"] for shard in dataset.manifest["shards"]}
    shares = consumer_rows([rows_of.get(path, 0) for path in train_files], world_size * max(1, config.num_workers))
    if is_main and max(shares) > 2 * max(1, min(shares)):
        log.warning("the %d training shards split unevenly over %d data consumers (ranks x workers): %s examples each; "
                    "the smaller shares repeat their examples more often (fewer workers, or shards of equal size, "
                    "avoid it)", len(train_files), len(shares), shares)

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
        progress = _progress_display(config.max_steps, step)

    # -- the loop -----------------------------------------------------------------------------
    # The GPU is waited for only every `log_every` steps (and before validation and checkpoints):
    # the steps in between queue up, and their numbers are read back together.
    metrics: dict = {}
    last_checkpoint = checkpoint
    pending: list[dict] = []  # steps since the last log, with device tensors
    window_started = time.perf_counter()
    while step < config.max_steps:
        micro = [next(batches) for _ in range(accum)]
        result = accumulate_gradients(forward, micro, config, device)
        grad_norm = torch.nn.utils.clip_grad_norm_(trained.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        clear_gradients(optimizer, config)
        step += 1
        micro_batches_done += accum
        pending.append({"step": step, "loss": result["loss"], "match_loss": result["match_loss"],
                        "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm, "pos_weight": result["pos_weight"],
                        "tokens": result["tokens"] * world_size})  # approximate: other ranks' counts are similar
        validate_now = is_main and held_out and (step % config.validate_every == 0 or step == config.max_steps)
        checkpoint_now = step % config.checkpoint_every == 0 or step == config.max_steps or step == stop_after
        if not (step % config.log_every == 0 or validate_now or checkpoint_now):
            continue
        # -- read back the steps since the last log (one synchronisation) --------------------------
        values = torch.stack([torch.stack([r["loss"], r["match_loss"], r["grad_norm"].float(), r["pos_weight"]])
                              for r in pending]).tolist()
        elapsed = time.perf_counter() - window_started
        tokens_per_s = sum(r["tokens"] for r in pending) / elapsed
        rows = []
        for row, (loss, match_loss, norm, pos_weight) in zip(pending, values):
            rows.append({"step": row["step"], "loss": loss, "lr": row["lr"], "grad_norm": norm, "pos_weight": pos_weight,
                         "tokens": row["tokens"], "tokens_per_s": tokens_per_s, "seconds": elapsed / len(pending),
                         **({"match_loss": match_loss} if trained is not model else {})})
        pending = []
        metrics = rows[-1]
        if validate_now:
            validation_started = time.perf_counter()
            metrics.update(validate(model, held_out, config, device))
            metrics["val_seconds"] = time.perf_counter() - validation_started
        if checkpoint_now:
            if is_main:
                trainer_state = {"data": {"micro_batches_per_rank": micro_batches_done, "world_size": world_size},
                                 "metrics": metrics, "config": config.model_dump(mode="json")}
                last_checkpoint = save_checkpoint(out, step, model, optimizer, scheduler, trainer_state, training_modules)
            if distributed:
                torch.distributed.barrier()
        if is_main:
            metrics_file.write("".join(json.dumps(r) + "\n" for r in rows))
            metrics_file.flush()
            if progress is not None:
                progress.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{tokens_per_s:.0f}")
                progress.update(len(rows))
        window_started = time.perf_counter()  # validation and checkpoints are not training time
        if stop_after is not None and step >= stop_after:
            break
    if progress is not None:
        progress.close()
    if metrics_file is not None:
        metrics_file.close()
    return {**summary, "step": step, "last_metrics": metrics, "checkpoint": str(last_checkpoint) if last_checkpoint else None}
