"""`linkscan evaluate` (retrievers on a benchmark suite -> report) and `linkscan retrieve` (one
document, one question -> the top units)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

DEFAULT_TOKENIZER = "EleutherAI/gpt-neox-20b"


def _quiet_model_loading() -> None:
    """No per-weight progress bar on the console when the dense model loads."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def evaluate(
    benchmarks: Path = typer.Option(..., "--benchmarks", help="Folder of benchmark files (plain JSONL pairs and/or the paper's test-set .json/.pkl)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated benchmark names to keep."),
    retriever: List[str] = typer.Option(["bm25"], "--retriever", help="scanner:<checkpoint>, bm25, bm25-chunks, dense[:<path>], dense-chunks[:<path>], random, oracle; repeat for several."),
    k: int = typer.Option(50, "--k", min=1, help="Units handed to the reader (answer containment, LLM)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: <data>/evals/<run id>)."),
    data: Optional[str] = typer.Option(None, "--data", help="Data folder (default: $LINKSCAN_DATA, else ./data)."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", help="Tokenizer hub id or local tokenizer.json (the scanner's)."),
    max_questions: Optional[int] = typer.Option(None, "--max-questions", min=1, help="Evaluate only the first N questions of each benchmark."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random retriever and the bootstrap."),
    scanner_mode: str = typer.Option("single_pass", "--scanner-mode", help="single_pass or sliding_window (the paper's 120k/60k windows)."),
    device: str = typer.Option("cpu", "--device", help="Device of the scanner and dense models (cpu, cuda)."),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint: enables the answer-and-judge protocol."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="Model that answers and judges (with --llm-base-url)."),
    llm_api_key_env: str = typer.Option("OPENAI_API_KEY", "--llm-api-key-env", help="Environment variable holding the API key (local servers need none)."),
) -> None:
    """Score retrievers on a benchmark suite; write predictions, tables, plots and the config."""
    from pydantic import ValidationError

    from evaluation.benchmarks import BenchmarkError
    from evaluation.retrievers import RetrieverError
    from evaluation.run import EvalConfig, run_evaluation, run_id
    from flows.runtime import resolve_data_root
    from pipeline.config import CorpusConfig

    if bool(llm_base_url) != bool(llm_model):
        _fail("--llm-base-url and --llm-model go together (the LLM protocol needs both)")
    root = resolve_data_root(data)
    try:
        llm = None
        if llm_base_url:
            from generators.llm.config import LLMConfig

            llm = LLMConfig(base_url=llm_base_url, model=llm_model, api_key_env=llm_api_key_env)
        config = EvalConfig(
            benchmarks=str(benchmarks.resolve()),
            only=[name.strip() for name in only.split(",") if name.strip()] if only else None,
            retrievers=retriever,
            k=k,
            max_questions=max_questions,
            seed=seed,
            corpus=CorpusConfig(tokenizer=tokenizer),
            scanner_mode=scanner_mode,
            device=device,
            llm=llm,
        )
    except ValidationError as error:
        _fail(f"invalid option: {error.errors()[0]['loc'][-1]}: {error.errors()[0]['msg']}")
    out_dir = out or root / "evals" / run_id(config)
    _quiet_model_loading()
    client = None
    if config.llm is not None:
        from generators.llm.client import LLMClient
        from generators.llm.config import MissingAPIKeyError, resolve_api_key

        try:
            api_key = resolve_api_key(config.llm, os.environ)
        except MissingAPIKeyError as error:
            _fail(str(error))
        client = LLMClient(config.llm, api_key=api_key, cache_path=root / "cache" / "llm.sqlite")
    try:
        result = run_evaluation(config, out_dir, llm_client=client, progress=typer.echo)
    except (BenchmarkError, RetrieverError, FileNotFoundError) as error:
        _fail(str(error))
    finally:
        if client is not None:
            client.close_cache()
    from evaluation.report import to_markdown

    table = result.tables["per_benchmark"]
    shown = [m for m in ("recall@10", f"recall@{k}", "ndcg@10", "mrr", "answer_containment", "llm_correct", "token_f1")
             if table and m in table[0]]
    typer.echo(to_markdown(table, ["benchmark", "retriever"], list(dict.fromkeys(shown)), "Per benchmark (means)", with_ci=False))
    typer.echo(f"report: {out_dir / 'report.md'}")
    for plot in result.plots:
        typer.echo(f"plot: {out_dir / plot}")


def retrieve(
    retriever: str = typer.Option(..., "--retriever", help="scanner:<checkpoint>, bm25, bm25-chunks, dense[:<path>], dense-chunks[:<path>], random."),
    document: Path = typer.Option(..., "--document", exists=True, dir_okay=False, help="A document file (.txt, .md, .html, or the first record of .jsonl/.parquet)."),
    question: str = typer.Option(..., "--question", help="The question."),
    k: int = typer.Option(20, "--k", min=1, help="How many units to print."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", help="Tokenizer hub id or local tokenizer.json."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random retriever."),
    device: str = typer.Option("cpu", "--device", help="Device of the scanner and dense models."),
) -> None:
    """Print the top units of one document for one question, best first, with their scores."""
    from rich.console import Console
    from rich.table import Table

    from evaluation.metrics import rank_units
    from evaluation.retrievers import Query, RetrieverError, make_retriever
    from evaluation.units import segment_document
    from pipeline.config import CorpusConfig
    from pipeline.drops import Drops
    from pipeline.readers import read_documents
    from pipeline.segment import Segmenter
    from pipeline.tokenize import load_tokenizer

    if retriever == "oracle":
        _fail("the oracle needs gold evidence; use it with `linkscan evaluate`")
    _quiet_model_loading()
    config = CorpusConfig(tokenizer=tokenizer)
    drops = Drops()
    raw = next(iter(read_documents(document, config, drops)), None)
    if raw is None:
        reasons = ", ".join(drops.as_dict()) or "no documents"
        _fail(f"{document}: nothing readable ({reasons}); give a UTF-8 .txt, .md, .html, .jsonl or .parquet file")
    try:
        loaded = load_tokenizer(tokenizer)
        units = segment_document(str(document), raw.text, Segmenter(config, loaded))
        chosen = make_retriever(retriever, seed=seed, tokenizer=loaded, device=device)
    except (RetrieverError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    [scores] = chosen.score_document(units, [Query("cli", question)])
    table = Table("rank", "unit", "score", "text", title=f"{chosen.name}: top {min(k, len(units))} of {len(units)} units ({units.n_tokens:,} tokens)")
    for rank, index in enumerate(rank_units(scores)[:k], 1):
        table.add_row(str(rank), str(int(index)), f"{scores[index]:.4f}", " ".join(units.units[index].split()))
    Console(width=160).print(table)
