"""The ``generate`` flow: corpus -> chunks -> links -> examples, as a published dataset version.

The flow is thin: it plans the version (``linkscan.generators.stage.plan_generation``), maps
``generate_shard`` over the shards on the configured task runner, publishes, attaches artifacts
and emits ``linkscan.dataset.published``. Resuming is the store's job, not Prefect's result cache:
a shard already in the staging folder is skipped, so a killed run rerun finishes with the same
bytes.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from pydantic import Field, model_validator

from linkscan.flows import artifacts, events
from linkscan.flows.demo import BUNDLED_TOKENIZER, build_demo_corpus, bundled_tokenizer, demo_corpus_dir
from linkscan.flows.runtime import TaskRunnerConfig, make_task_runner, resolve_data_root, retry_transient
from linkscan.generators import stage
from linkscan.generators.config import GenerateConfig
from linkscan.generators.progress import GenerationProgress, report_every
from linkscan.generators.stage import GenerationPlan
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.store import DatasetWriter

class DemoCorpusConfig(CorpusConfig):
    """``CorpusConfig`` whose tokenizer defaults to the bundled one (no hub needed)."""

    tokenizer: str = BUNDLED_TOKENIZER


class FlowGenerateConfig(GenerateConfig):
    """The flow's ``config`` parameter: a ``GenerateConfig`` whose defaults are the demo's, so a
    partial dict (``{"name": "mine", "corpus": ["corpus/"]}``) keeps the bundled tokenizer and the
    dataset name "demo" for what it leaves out, as the train and evaluate flows keep theirs."""

    name: str = "demo"
    corpus_config: DemoCorpusConfig = Field(default_factory=DemoCorpusConfig)

    @model_validator(mode="before")
    @classmethod
    def _from_plain_config(cls, data: Any) -> Any:
        # A GenerateConfig built in Python (every field explicit) is taken as it is.
        return data.model_dump() if isinstance(data, GenerateConfig) and not isinstance(data, cls) else data


def demo_config() -> GenerateConfig:
    """The default parameters: the embedded demo corpus, the offline generator, a bundled tokenizer."""
    return FlowGenerateConfig()


def with_demo_inputs(config: GenerateConfig, data_root: Path) -> GenerateConfig:
    """``config`` with the embedded demo corpus for an empty corpus list and the bundled tokenizer
    for ``bundled:all-MiniLM-L6-v2``, both written under ``data_root`` on demand."""
    update: dict = {}
    if not config.corpus:
        update["corpus"] = [str(p) for p in build_demo_corpus(demo_corpus_dir(data_root))]
    if config.corpus_config.tokenizer == BUNDLED_TOKENIZER:
        tokenizer = str(bundled_tokenizer(data_root))
        update["corpus_config"] = config.corpus_config.model_copy(update={"tokenizer": tokenizer})
    return config.model_copy(update=update) if update else config


def _with_api_key(plan: GenerationPlan) -> GenerationPlan:
    """The plan with the LLM API key from the environment variable its config names.

    Resolved inside each task (in the process that runs it), so the key never travels as a flow
    or task parameter, which Prefect would store.
    """
    if plan.config.generator != "llm" or plan.config.llm is None:
        return plan
    from linkscan.generators.llm.config import resolve_api_key

    return dataclasses.replace(plan, api_key=resolve_api_key(plan.config.llm, os.environ))


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)
def plan_task(config: GenerateConfig, data_root: str) -> GenerationPlan:
    return stage.plan_generation(config, Path(data_root))


@task(
    name="generate-shard",
    task_run_name="shard-{index}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def generate_shard_task(plan: GenerationPlan, index: int) -> dict:
    """One shard, logging its progress (documents, chunks, examples, MB/s, time left) every 30 s."""
    logger = get_run_logger()
    progress = GenerationProgress(plan.shard_inputs[index])
    with report_every(progress, lambda line: logger.info("shard %d: %s", index, line), interval_s=30,
                      line=progress.log_line):
        return stage.generate_shard(_with_api_key(plan), index, progress=progress)


@task(name="shard-keys", task_run_name="keys-{index}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def shard_keys_task(plan: GenerationPlan, index: int) -> int:
    """The dedupe's first pass over one shard: its documents' content keys."""
    return stage.shard_keys(plan, index)


@task(name="publish", retries=1, retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def publish_task(plan: GenerationPlan, writer: DatasetWriter | None = None) -> str:
    return str(stage.publish_generation(plan, writer))


@flow(name="generate-shards", validate_parameters=False, persist_result=False)
def generate_shards(plan: GenerationPlan) -> list[dict]:
    """Every shard of ``plan``, mapped over this flow's task runner (set per run by ``generate``).

    Waits for every shard, so an LLM outage leaves each shard's answers received so far in the
    cache, then fails with all waiting chunks counted in one message."""
    if plan.num_shards > 1:  # the corpus-wide dedupe: every shard's keys, then what each one drops
        shard_keys_task.map(plan=unmapped(plan), index=list(range(plan.num_shards))).result()
        stage.prepare_dedupe(plan)
    futures = generate_shard_task.map(plan=unmapped(plan), index=list(range(plan.num_shards)))
    futures.wait()
    results, waiting, failed = [], [], []
    for future in futures:
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, stage.PendingChunksError):
            waiting.append(outcome)
        elif isinstance(outcome, BaseException):
            failed.append(outcome)
        else:
            results.append(outcome)
    if failed:
        raise failed[0]
    if waiting:
        raise stage.PendingChunksError.combine(waiting)
    return results


@flow(name="generate", persist_result=False)
def generate(
    config: FlowGenerateConfig = demo_config(),
    data_root: Optional[str] = None,
    task_runner: TaskRunnerConfig = TaskRunnerConfig(),
) -> dict:
    """Generate a dataset version and publish it; with no parameters, from the embedded demo corpus.

    ``data_root`` defaults to ``$LINKSCAN_DATA``, else ``./data``; an empty ``config.corpus``
    means the embedded demo corpus (Python reference topics and licence texts).
    """
    logger = get_run_logger()
    root = resolve_data_root(data_root)
    if not config.corpus:
        logger.info("no corpus given: using the embedded demo corpus under %s", demo_corpus_dir(root))
    config = with_demo_inputs(config, root)
    plan = plan_task(config, str(root))
    if plan.already_published:
        path = Path(plan.already_published)
        logger.info("%s version %s is already published at %s: nothing to generate", plan.name, plan.version, path)
        stage.repair_latest(plan)
        newly_published = False
    else:
        logger.info(
            "generating %s version %s: %d shards on %s", plan.name, plan.version, plan.num_shards, task_runner.kind
        )
        with stage.holding_version(plan) as writer:  # a second run of this version is refused, not interleaved
            generate_shards.with_options(task_runner=make_task_runner(task_runner))(plan)
            path = Path(publish_task(plan, writer))
        newly_published = True
    manifest = json.loads((path / "dataset.json").read_text())
    artifacts.publish_dataset_artifacts(manifest, path)
    complete = manifest.get("complete", True)
    if newly_published or not events.dataset_announced(root, plan.name, plan.version, events.current_api_url()):
        api_url = events.emit_dataset_published(plan.name, plan.version, path, root, complete=complete)
        logger.info("published %s version %s at %s (event %s to %s%s)", plan.name, plan.version, path,
                    events.DATASET_PUBLISHED, api_url or "a temporary Prefect server, which no trigger listens to",
                    "" if complete else "; a partial version, which the training trigger skips")
    return {"name": plan.name, "version": plan.version, "path": str(path), "newly_published": newly_published,
            "complete": complete}
