"""The ``evaluate`` flow: score a trained checkpoint and the baselines on a benchmark suite.

``evaluate/default`` is started by ``linkscan.model.trained`` with the event's checkpoint, how to
load it (``scanner:<checkpoint>``, or a dense run's ``dense:<folder>``), data folder and the
dataset's tokenizer (so documents are segmented as the model was trained). The
suite is ``benchmarks``, else ``<data>/evalsets``; with neither, the run fails and says where to
put one. Reports go to ``<data>/evals/<run id>`` (``linkscan.evaluation.run``); a rerun of the same run
resumes from the benchmarks it finished. Skipped benchmarks and questions are logged as warnings
and returned (``complete`` is False then).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from linkscan.evaluation.run import EvalConfig
from linkscan.flows.artifacts import artifact_key
from linkscan.flows.runtime import options_model, resolve_data_root, retry_transient

# Defaults of the flow: BM25 and random next to the scanner, on the first 20 questions of each
# benchmark (a quick look; set max_questions to null for the full suite).
DEMO_EVAL_DEFAULTS = {"retrievers": ["bm25", "random"], "max_questions": 20, "bootstrap_samples": 200}
# The evaluation config without the suite folder, which the flow resolves.
EvalOptions = options_model(
    "EvalOptions", EvalConfig, {"benchmarks"}, DEMO_EVAL_DEFAULTS,
    "Evaluation settings: linkscan.evaluation.run.EvalConfig without benchmarks, with quick-look defaults.",
)


@task(name="run-evaluation", retries=1, retry_condition_fn=retry_transient, cache_policy=NO_CACHE, persist_result=False)
def evaluation_task(config: EvalConfig, out_dir: str, data_root: str) -> dict:
    from linkscan.evaluation.run import run_evaluation

    client = None
    if config.llm is not None:
        from linkscan.generators.llm.client import LLMClient
        from linkscan.generators.llm.config import resolve_api_key

        client = LLMClient(config.llm, api_key=resolve_api_key(config.llm, os.environ),
                           cache_path=Path(data_root) / "cache" / "llm.sqlite")
    logger = get_run_logger()
    try:
        result = run_evaluation(config, out_dir, llm_client=client, progress=logger.info)
    finally:
        if client is not None:
            client.close_cache()
    for skip in result.skipped_benchmarks:
        logger.warning("skipped %s (%s): %s", skip.name, skip.reason, skip.detail)
    for name, reasons in result.not_measured.items():
        logger.warning("not measured: %s: %s", name, ", ".join(f"{n} questions ({reason})" for reason, n in reasons.items()))
    return {"out_dir": str(result.out_dir), "per_benchmark": result.tables.get("per_benchmark", []), "summary": result.summary,
            "complete": result.complete}


@flow(name="evaluate", persist_result=False)
def evaluate(
    checkpoint: Optional[str] = None,
    data_root: Optional[str] = None,
    benchmarks: Optional[str] = None,
    tokenizer: Optional[str] = None,
    options: EvalOptions = EvalOptions(),
    retriever: Optional[str] = None,
) -> dict:
    """Evaluate the trained model and ``options.retrievers`` on the suite: ``retriever`` (a spec,
    e.g. ``dense:<folder>``) when given, else ``scanner:<checkpoint>``."""
    from linkscan.evaluation.run import run_id

    logger = get_run_logger()
    root = resolve_data_root(data_root)
    suite = Path(benchmarks) if benchmarks else root / "evalsets"
    if not suite.is_dir():  # a run that evaluates nothing is not a success
        raise FileNotFoundError(
            f"no benchmark suite at {suite}: nothing to evaluate for {checkpoint or 'the baselines'}; put "
            "benchmark files there, pass benchmarks=<folder>, or serve with `make serve` (which passes "
            "../shared/evalsets/dev when it is there)"
        )
    settings = options.model_dump()
    settings["retrievers"] = trained_retrievers(settings["retrievers"], checkpoint, retriever)
    if tokenizer:
        settings["corpus"] = {**settings["corpus"], "tokenizer": tokenizer}
    config = EvalConfig(benchmarks=str(suite.resolve()), **settings)
    out = root / "evals" / run_id(config)
    result = evaluation_task(config, str(out), str(root))
    _evaluation_artifacts(result, checkpoint)
    logger.info("evaluated %s on %s: report %s", checkpoint or "the baselines", suite, Path(result["out_dir"]) / "report.md")
    return {"checkpoint": checkpoint, "evaluated": True, "out_dir": result["out_dir"], "benchmarks": str(suite),
            "complete": result["complete"]}


def trained_retrievers(retrievers: list[str], checkpoint: Optional[str], retriever: Optional[str]) -> list[str]:
    """``retrievers`` plus the trained model's spec (an event without a retriever, or an empty one,
    means the scanner checkpoint)."""
    spec = retriever or (f"scanner:{checkpoint}" if checkpoint else None)
    return [*retrievers, spec] if spec and spec not in retrievers else list(retrievers)


def _evaluation_artifacts(result: dict, checkpoint: Optional[str]) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    out = Path(result["out_dir"])
    if result["per_benchmark"]:
        create_table_artifact(result["per_benchmark"], key=artifact_key("evaluation"),
                              description=f"per-benchmark means for {checkpoint or 'the baselines'}")
    report = out / "report.md"
    if report.is_file():
        create_markdown_artifact(report.read_text(), key=artifact_key("evaluation", "report"))
    create_link_artifact(out.resolve().as_uri(), link_text=f"evaluation folder {out}", key=artifact_key("evaluation", "run"))
