"""The ``train`` flow: train the scanner on one published dataset version.

``train/default`` is started by ``linkscan.dataset.published`` with the event's dataset name,
version and data folder, so a regeneration retrains on exactly the version it published. The run
folder is ``<data>/models/<dataset>/<version>-<options hash>``: rerunning the same training
resumes from its latest checkpoint instead of starting over. A finished run emits
``linkscan.model.trained``, which starts ``evaluate/default``.

Multi-GPU training runs under torchrun (``linkscan train``); this flow trains in one process.

``target="dense"`` fine-tunes a sentence-transformers model on the version instead
(``linkscan.training.dense_loop``, settings in ``dense_options``) into ``<version>-dense-<options hash>``, and
emits ``linkscan.model.trained`` with ``retriever: dense:<folder>``, so ``evaluate/default`` scores the
fine-tuned folder (by hand: ``linkscan evaluate --retriever dense:<folder>``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from linkscan.flows import events
from linkscan.flows.artifacts import artifact_key
from linkscan.flows.runtime import options_model, resolve_data_root, retry_transient
from linkscan.pipeline.layout import DataLayout, content_hash
from linkscan.training.configs import TrainConfig
from linkscan.training.dense import DenseTrainConfig

# Defaults of the flow: a few CPU steps of the small shape, enough to show the chain on the demo
# dataset, not to train a useful retriever. Real runs set options (or use `linkscan train` under
# torchrun on GPUs).
DEMO_TRAIN_DEFAULTS = {
    "shape": "small", "backend": "hf", "device": "cpu", "precision": "fp32", "max_steps": 20,
    "tokens_per_step": 16384, "micro_batch_tokens": 8192, "validate_every": 10, "checkpoint_every": 10,
    "progress": False,
}
# The training config without the two fields the flow decides (the dataset version and the run
# folder), so the UI shows every other setting, typed.
TrainOptions = options_model(
    "TrainOptions", TrainConfig, {"dataset", "out"}, DEMO_TRAIN_DEFAULTS,
    "Training settings: linkscan.training.configs.TrainConfig without dataset and out, with demo-size defaults.",
)


# The dense target's flow defaults: a few CPU steps, a look at the chain rather than a useful model.
DEMO_DENSE_DEFAULTS = {"device": "cpu", "max_steps": 20, "batch_size": 16, "validation_examples": 16,
                       "validate_every": 20, "checkpoint_every": 20, "progress": False}
DenseTrainOptions = options_model(
    "DenseTrainOptions", DenseTrainConfig, {"dataset", "out"}, DEMO_DENSE_DEFAULTS,
    "Dense fine-tuning settings: linkscan.training.dense.DenseTrainConfig without dataset and out, with demo-size defaults.",
)


def run_name(version: str, options, target: str = "scanner") -> str:
    kind = "" if target == "scanner" else f"{target}-"
    return f"{version}-{kind}{content_hash(options.model_dump(mode='json'))[:8]}"


@task(name="validate-dataset", retries=1, retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def validate_dataset_task(dataset: str, version: Optional[str], data_root: str) -> dict:
    """Open the version (LATEST when ``version`` is empty), check every shard's sha256, count rows."""
    from linkscan.pipeline.store import dataset_dir, open_dataset

    target = dataset_dir(data_root, dataset) / version if version else dataset_dir(data_root, dataset)
    ds = open_dataset(target)
    ds.verify()
    return {
        "name": ds.name,
        "version": ds.version,
        "path": str(ds.path),
        "examples": ds.num_rows("examples"),
        "shards": len(ds.shard_paths("examples")),
        "tokenizer": (ds.manifest.get("config") or {}).get("corpus_config", {}).get("tokenizer"),
    }


@task(name="train-model", retries=1, retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def train_task(config: TrainConfig) -> dict:
    """The training loop (``linkscan.training.loop.train``), resuming from the run folder's latest checkpoint."""
    from linkscan.training.loop import train as run_training

    return run_training(config, resume=True)


@task(name="train-dense-model", retries=1, retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def train_dense_task(config: DenseTrainConfig) -> dict:
    """Dense fine-tuning (``linkscan.training.dense_loop.train_dense``), resuming from the run folder's latest checkpoint."""
    from linkscan.training.dense_loop import train_dense

    return train_dense(config, resume=True)


@flow(name="train", persist_result=False)
def train(
    dataset: str = "demo",
    version: Optional[str] = None,
    data_root: Optional[str] = None,
    options: TrainOptions = TrainOptions(),
    target: Literal["scanner", "dense"] = "scanner",
    dense_options: DenseTrainOptions = DenseTrainOptions(),
) -> dict:
    """Train on ``dataset`` at ``version`` (default: its LATEST) under ``data_root``: the scanner
    (``options``), or with ``target="dense"`` a sentence-transformers retriever (``dense_options``)."""
    logger = get_run_logger()
    root = resolve_data_root(data_root)
    checked = validate_dataset_task(dataset, version or None, str(root))
    logger.info(
        "dataset %s version %s verified: %d examples in %d shards at %s",
        checked["name"], checked["version"], checked["examples"], checked["shards"], checked["path"],
    )
    if checked["examples"] == 0:
        raise ValueError(
            f"{checked['path']}: dataset {checked['name']} version {checked['version']} has no examples to train on; "
            "its dataset.json lists why chunks gave none (drop_reasons)"
        )
    if target == "dense":
        return _train_dense(checked, root, dense_options)
    run = run_name(checked["version"], options)
    out = DataLayout(root).models(checked["name"]) / run
    config = TrainConfig(dataset=checked["path"], out=str(out), **options.model_dump())
    result = train_task(config)
    if not result.get("checkpoint"):
        raise RuntimeError(f"training {out} finished without a checkpoint; check its metrics.jsonl")
    _train_artifacts(checked, run, out, result)
    events.emit_model_trained(
        checked["name"], run, Path(result["checkpoint"]), checked["name"], checked["version"], root,
        tokenizer=checked["tokenizer"],
    )
    logger.info("trained %s: checkpoint %s (event %s)", run, result["checkpoint"], events.MODEL_TRAINED)
    return {"dataset": checked["name"], "version": checked["version"], "run": run, "out": str(out),
            "checkpoint": result["checkpoint"], "step": result["step"]}


def _train_dense(checked: dict, root: Path, options) -> dict:
    logger = get_run_logger()
    run = run_name(checked["version"], options, "dense")
    out = DataLayout(root).models(checked["name"]) / run
    result = train_dense_task(DenseTrainConfig(dataset=checked["path"], out=str(out), **options.model_dump()))
    if not result.get("model"):
        raise RuntimeError(f"dense training {out} finished without a model; check its metrics.jsonl")
    _train_artifacts(checked, run, out, result)
    events.emit_model_trained(
        checked["name"], run, Path(result["model"]), checked["name"], checked["version"], root,
        tokenizer=checked["tokenizer"], retriever=f"dense:{result['model']}",
    )
    logger.info("trained dense %s: model %s (event %s; by hand: --retriever dense:%s)", run, out, events.MODEL_TRAINED, out)
    return {"dataset": checked["name"], "version": checked["version"], "run": run, "out": str(out),
            "model": result["model"], "step": result["step"], "target": "dense"}


def _train_artifacts(checked: dict, run: str, out: Path, result: dict) -> None:
    from prefect.artifacts import create_link_artifact, create_table_artifact

    metrics = result.get("last_metrics") or {}
    create_table_artifact(
        [{"metric": key, "value": value} for key, value in metrics.items()],
        key=artifact_key("train", checked["name"]),
        description=f"last metrics of {run} on {checked['name']} {checked['version']} (step {result.get('step')})",
    )
    create_link_artifact(out.resolve().as_uri(), link_text=f"run folder {out}", key=artifact_key("train", checked["name"], "run"))
