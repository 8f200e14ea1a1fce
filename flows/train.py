"""The ``train`` flow: train the scanner on one published dataset version.

``train/default`` is started by ``linkscan.dataset.published`` with the event's dataset name,
version and data folder, so a regeneration retrains on exactly the version it published.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import resolve_data_root


@task(name="validate-dataset", cache_policy=NO_CACHE, persist_result=False)
def validate_dataset_task(dataset: str, version: Optional[str], data_root: str) -> dict:
    """Open the version (LATEST when ``version`` is empty), check every shard's sha256, count rows."""
    from pipeline.store import dataset_dir, open_dataset

    target = dataset_dir(data_root, dataset) / version if version else dataset_dir(data_root, dataset)
    ds = open_dataset(target)
    ds.verify()
    return {
        "name": ds.name,
        "version": ds.version,
        "path": str(ds.path),
        "examples": ds.num_rows("examples"),
        "shards": len(ds.shard_paths("examples")),
    }


@flow(name="train", persist_result=False)
def train(dataset: str = "demo", version: Optional[str] = None, data_root: Optional[str] = None) -> dict:
    """Train on ``dataset`` at ``version`` (default: its LATEST) under ``data_root``."""
    logger = get_run_logger()
    root = resolve_data_root(data_root)
    checked = validate_dataset_task(dataset, version or None, str(root))
    logger.info(
        "dataset %s version %s verified: %d examples in %d shards at %s",
        checked["name"], checked["version"], checked["examples"], checked["shards"], checked["path"],
    )
    # The training stage is not wired into this flow yet: say so, and record what it would train.
    logger.warning(
        "the training stage is not wired into the train flow yet: no model was trained; recorded that "
        "version %s of %s (%d examples) would be trained, and no linkscan.model.trained event is emitted",
        checked["version"], checked["name"], checked["examples"],
    )
    from prefect.artifacts import create_markdown_artifact

    from flows.artifacts import artifact_key

    create_markdown_artifact(
        f"# Would train on {checked['name']} {checked['version']}\n\n"
        f"- path: `{checked['path']}`\n- examples: {checked['examples']}\n- shards: {checked['shards']}\n\n"
        "The training stage is not wired into this flow yet; no model was trained.\n",
        key=artifact_key("train", checked["name"]),
        description="what the train flow would train",
    )
    return {**checked, "trained": False, "data_root": str(Path(root))}
