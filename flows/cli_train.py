"""`linkscan train`: train the scanner on a dataset version, on one process or under torchrun.

``--target dense`` fine-tunes a sentence-transformers model on the same shards instead
(``linkscan.training.dense_loop``: the paper's embedding baseline; one process).

Under ``torchrun --nproc_per_node N $(which linkscan) train ...`` (or ``torchrun -m linkscan.flows.cli_train``)
each process reads its rank from torchrun's environment here, initialises the process group
(NCCL on GPUs, gloo on CPU) and passes rank and world size to the training loop. This module
imports neither Prefect nor spaCy, so it also runs on the GPU machine.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import List, Optional

import typer


def train(
    target: str = typer.Option("scanner", "--target", help="scanner (the Mamba-2 scanner) or dense (fine-tune a local sentence-transformers model, default the packaged all-MiniLM-L6-v2; other settings by --set, see linkscan.training.dense.DenseTrainConfig)"),
    dataset: str = typer.Option(..., "--dataset", help="dataset version folder (or dataset folder: its LATEST)"),
    out: str = typer.Option(..., "--out", help="run folder: checkpoints/, metrics.jsonl, train_config.json"),
    preset: Optional[str] = typer.Option(None, "--preset", help="named settings: from-scratch (one H200, random init) or cpu-example; options given here override them"),
    model: Optional[str] = typer.Option(None, "--model", help="hub id or local folder to start from (dense: a local sentence-transformers folder)"),
    shape: Optional[str] = typer.Option(None, "--shape", help="shape when starting from scratch: small, 130m, 1.3b, ... (default small)"),
    config_file: Optional[str] = typer.Option(None, "--config", metavar="FILE", help="YAML file of TrainConfig settings (under a preset, over the defaults; options given here win)"),
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="any TrainConfig setting, e.g. --set length_buckets=[1024,2048] (last word)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf or mamba_ssm (default: mamba_ssm on CUDA when installed)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="optimizer steps (default 100; dense: one epoch over the pairs)"),
    tokens_per_step: Optional[int] = typer.Option(None, "--tokens-per-step", help="global token budget of one optimizer step (default 65536)"),
    micro_batch_tokens: Optional[int] = typer.Option(None, "--micro-batch-tokens", help="padded-token budget of one forward/backward (default 65536; 1.3b on an H200: 32768)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate, cosine to --min-lr (default 1e-4; dense: 2e-5, linear decay after a 10% warm-up)"),
    min_lr: Optional[float] = typer.Option(None, "--min-lr", help="default 1e-5"),
    precision: Optional[str] = typer.Option(None, "--precision", help="bf16 (autocast, fp32 master weights; default) or fp32 (the dense default)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    match_loss_weight: Optional[float] = typer.Option(None, "--match-loss-weight", help="weight of the training-only match objective (default 0: the paper's loss alone)"),
    pack: Optional[bool] = typer.Option(None, "--pack/--no-pack", help="packed rows of --micro-batch-tokens (mamba_ssm only)"),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs", help="replay each micro-batch as CUDA graphs (needs --pack, one GPU process)"),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="dataloader worker processes per rank (default 0)"),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="steps between metric read-backs (default 1)"),
    validate_every: Optional[int] = typer.Option(None, "--validate-every", help="default 50"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="default 50"),
    validation: Optional[str] = typer.Option(None, "--validation", help="auto (default), shards (the last --validation-shards), documents (a stable --validation-fraction of them) or none; dense: documents (default) or none"),
    validation_shards: Optional[int] = typer.Option(None, "--validation-shards", min=0, help="example shards held out with --validation shards (default 1)"),
    validation_fraction: Optional[float] = typer.Option(None, "--validation-fraction", min=0.0, max=1.0, help="share of documents held out with --validation documents (default 0.1)"),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="train on a version published with --allow-partial (complete: false)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start again from scratch in an --out that holds a run (its checkpoints and metrics are removed)"),
) -> None:
    """Train the Mamba-2 scanner (binary head at sentence ends) on the examples shards of a dataset,
    or with --target dense fine-tune a sentence-transformers retriever on them.

    \b
    Exit codes: 0 done; 1 a write failed (full disk, unwritable --out; rerun with
    --resume); 2 bad option or input; 130/143 interrupted (rerun with --resume).
    """
    import torch

    from linkscan.flows.cli_errors import interruptible
    from linkscan.pipeline.store import StoreError
    from linkscan.training.checkpoint import CheckpointError
    from linkscan.pipeline.settings import load_settings
    from linkscan.training.configs import TrainConfig, TrainSettings, preset_values
    from linkscan.training.loop import train as run_training
    from linkscan.training.model import default_backend

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if resume and overwrite:
        typer.echo("error: --resume continues a run and --overwrite starts it again; pass one of them", err=True)
        raise typer.Exit(2)
    given = {
        "model": model, "shape": shape, "backend": backend, "device": device, "max_steps": max_steps,
        "tokens_per_step": tokens_per_step, "micro_batch_tokens": micro_batch_tokens, "lr": lr, "min_lr": min_lr,
        "precision": precision, "seed": seed, "match_loss_weight": match_loss_weight, "pack": pack,
        "cuda_graphs": cuda_graphs, "num_workers": num_workers, "log_every": log_every,
        "validate_every": validate_every, "checkpoint_every": checkpoint_every, "validation": validation,
        "validation_shards": validation_shards, "validation_fraction": validation_fraction,
    }
    if target == "dense":
        _train_dense(given, preset, dataset, out, config_file, sets, allow_partial, resume, overwrite)
        return
    if target != "scanner":
        typer.echo(f"error: --target {target!r}: use scanner or dense", err=True)
        raise typer.Exit(2)
    try:
        chosen = load_settings(TrainSettings, config_file, {**given, "dataset": dataset, "out": out,
                                                            "allow_partial": allow_partial or None},
                               sets or (), base=preset_values(preset))
        values = chosen.model_dump(exclude_unset=True)
        values.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        values.setdefault("backend", default_backend(values["device"]))
        train_config = TrainConfig(**values)
    except ValueError as error:  # pydantic's ValidationError, a bad file or --set, or an unknown preset
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    device = train_config.device
    # torchrun sets these; a plain run is rank 0 of 1.
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size > 1:
        backend_name = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend_name)
    try:
        with interruptible("rerun with --resume to continue from the last checkpoint"):
            result = run_training(train_config, rank=rank, world_size=world_size, local_rank=local_rank,
                                  resume=resume, overwrite=overwrite)
    except typer.Exit:  # the interrupt's line is printed and its code (130, 143) stands; Exit is a RuntimeError
        raise
    except (CheckpointError, StoreError, ValueError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # a full disk, a read-only run folder
        _os_failure(error, train_config.out)
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()
    if rank == 0:
        typer.echo(json.dumps(result, indent=2, default=str))


def _train_dense(given: dict, preset: Optional[str], dataset: str, out: str, config_file: Optional[str],
                 sets: Optional[List[str]], allow_partial: bool, resume: bool, overwrite: bool) -> None:
    """``--target dense``: the options both targets share, --config and --set, into a DenseTrainConfig."""
    import torch

    from linkscan.flows.cli_errors import interruptible
    from linkscan.pipeline.settings import load_settings
    from linkscan.pipeline.store import StoreError
    from linkscan.training.dense import DenseTrainConfig
    from linkscan.training.dense_loop import train_dense

    # The scanner's options that are no DenseTrainConfig field (--shape, --pack, ...): an error, not ignored.
    scanner_only = set(given) - set(DenseTrainConfig.model_fields)
    misplaced = [name for name in given if name in scanner_only and given[name] is not None] + (["preset"] if preset else [])
    if misplaced:
        shown = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        typer.echo(f"error: {shown}: scanner options, not used by --target dense (its settings: "
                   "linkscan.training.dense.DenseTrainConfig, e.g. --set batch_size=16 --set hard_negatives=0)", err=True)
        raise typer.Exit(2)
    shared = {name: value for name, value in given.items() if name not in scanner_only}
    try:
        config = load_settings(DenseTrainConfig, config_file, {**shared, "dataset": dataset, "out": out,
                                                               "allow_partial": allow_partial or None}, sets or ())
        if "device" not in config.model_fields_set:
            config = config.model_copy(update={"device": "cuda" if torch.cuda.is_available() else "cpu"})
    except ValueError as error:  # a bad file, option or --set
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        with interruptible("rerun with --resume to continue from the last checkpoint"):
            result = train_dense(config, resume=resume, overwrite=overwrite)
    except typer.Exit:  # as for the scanner: an interrupt's exit code, not an error line
        raise
    except (StoreError, ValueError, RuntimeError) as error:  # ValueError: also a run folder holding a run
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # a full disk, a read-only run folder
        _os_failure(error, config.out)
    typer.echo(json.dumps(result, indent=2, default=str))


def _os_failure(error: OSError, out: str) -> None:
    """One line for an OSError while training into ``out``: checkpoints and LATEST are written
    atomically, so the last complete checkpoint is what --resume continues from."""
    from linkscan.flows.cli_errors import EXIT_FAILED, fail, os_error_line

    fail(os_error_line(error, Path(out), "--out", "rerun with --resume to continue from the last checkpoint"), EXIT_FAILED)


if __name__ == "__main__":
    typer.run(train)
