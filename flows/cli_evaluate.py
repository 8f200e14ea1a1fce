"""`linkscan evaluate` (retrievers on a benchmark suite -> report) and `linkscan retrieve` (one
document, one question -> the top units).

Exit codes of `linkscan evaluate`:
    0    every benchmark evaluated, every metric that applies measured
    2    nothing was done: a bad option or input (one `error:` line names it and the fix)
    3    finished, but something was skipped or not measured (a broken benchmark, an unknown --only
         name, a benchmark where no metric applies, a document with no text, an LLM verdict that
         could not be had); the console, report.md and config.json name each skip and its reason
    75   finished, but LLM requests failed for a transient reason (server down, busy or slow): those
         benchmarks are not marked finished; rerun the same command later (as `linkscan generate`)
    130  interrupted by SIGINT, 143 by SIGTERM: finished benchmarks stay in --out, and rerunning the
         same command resumes from them
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from linkscan.flows.cli_errors import EXIT_PENDING, fail, interruptible
from linkscan.pipeline.hub import hub_problem

DEFAULT_TOKENIZER = "EleutherAI/gpt-neox-20b"
EXIT_INCOMPLETE = 3  # finished, with benchmarks or questions skipped or not measured


def _quiet_model_loading() -> None:
    """No per-weight progress bar on the console when the dense model loads."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


# -- inputs checked before any work: the hub, the tokenizer, scanner checkpoints, the device -------

def _looks_local(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.endswith(".json")


def load_tokenizer_or_fail(name: str):
    """The tokenizer of --tokenizer, loaded before any work; an `error:` line (exit 2) when it cannot
    be: a missing file, or a hub id with no network and no cached copy (a cached copy is used offline)."""
    from linkscan.pipeline.tokenize import load_tokenizer

    try:
        return load_tokenizer(name)
    except (FileNotFoundError, ValueError) as error:
        fail(f"--tokenizer {name}: {error}")


def check_scanner_checkpoints(specs: List[str]) -> None:
    """Each scanner:<checkpoint> names a local folder, or a hub id the hub can serve now; else an
    `error:` line (exit 2). The folder's contents are checked when the model loads, still before any work."""
    for spec in specs:
        kind, _, checkpoint = spec.partition(":")
        if kind != "scanner" or not checkpoint or Path(checkpoint).expanduser().exists():
            continue
        if checkpoint.count("/") != 1 or checkpoint.startswith((".", "/", "~")):
            fail(f"--retriever {spec}: no folder {checkpoint}; pass a checkpoint folder (config.json + model.safetensors), "
                  "a training run folder (<data>/models/<name>/<run>), or a hub id owner/name")
        problem = hub_problem(checkpoint)
        if problem is not None:
            fail(f"--retriever {spec}: not a local folder, and the Hugging Face hub cannot serve it ({problem}); "
                  "download the checkpoint where there is network and pass its local folder")


def resolve_device(device: str, specs: List[str]) -> str:
    """``auto``: CUDA when there is a GPU (only dense and scanner retrievers use one), else the CPU."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        fail(f"--device {device}: use auto, cpu or cuda (cuda:N for one GPU of several)")
    needs_model = any(spec.partition(":")[0] in ("dense", "dense-chunks", "scanner") for spec in specs)
    if device == "cpu" or (device == "auto" and not needs_model):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: torch sees no CUDA device here; use --device cpu (or auto)")
    return device


def _finished_line(out_dir: Path, rid: str):
    """What an interrupted run kept, for the one line it ends with."""
    def describe() -> str:
        from linkscan.evaluation.finished import finished_benchmarks

        names = finished_benchmarks(out_dir, rid)
        return (f": {len(names)} finished benchmark(s) kept in {out_dir} ({', '.join(names)})" if names
                else f": no benchmark finished yet in {out_dir}")

    return describe


def _print_outcome(result, k: int, out_dir: Path) -> None:
    from linkscan.evaluation.report import to_markdown
    from linkscan.evaluation.run import speed_text

    table = result.tables["per_benchmark"]
    shown = [m for m in ("recall@10", f"recall@{k}", f"hit@{k}", "ndcg@10", "mrr", "answer_containment", "llm_correct", "token_f1")
             if table and m in table[0]]
    typer.echo(to_markdown(table, ["benchmark", "retriever"], list(dict.fromkeys(shown)), "Per benchmark (means)", with_ci=False))
    for name, speed in result.summary["retrieval"].items():
        typer.echo(f"speed: {speed_text(name, speed)}")
    typer.echo(f"report: {out_dir / 'report.md'}")
    for plot in result.plots:
        typer.echo(f"plot: {out_dir / plot}")
    for skip in result.skipped_benchmarks:
        typer.echo(f"skipped {skip.name} ({skip.reason}): {skip.detail}")
    for name, reasons in result.not_measured.items():
        typer.echo(f"not measured: {name}: " + ", ".join(f"{n} questions ({reason})" for reason, n in reasons.items()))
    for name in result.waiting:
        typer.echo(f"unfinished: {name}: LLM requests failed for a transient reason; rerun the same command to retry them")


def evaluate(
    benchmarks: Path = typer.Option(..., "--benchmarks", help="Folder of benchmark files (plain JSONL pairs and/or the paper's test-set .json/.pkl)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated benchmark names to keep."),
    retriever: Optional[List[str]] = typer.Option(None, "--retriever", help="scanner:<checkpoint>, bm25, bm25-chunks, dense[:<path>], dense-chunks[:<path>], random, oracle; repeat for several.", show_default="bm25"),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Units handed to the reader (answer containment, LLM); recall@k and hit@k get a column for it.", show_default="50"),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: <data>/evals/<run id>); rerunning into it resumes."),
    data: Optional[str] = typer.Option(None, "--data", help="Data folder (default: $LINKSCAN_DATA, else ./data)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer hub id or local tokenizer.json (the scanner's).", show_default=DEFAULT_TOKENIZER),
    max_questions: Optional[int] = typer.Option(None, "--max-questions", min=1, help="Evaluate only the first N questions of each benchmark."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random retriever and the bootstrap.", show_default="0"),
    scanner_mode: Optional[str] = typer.Option(None, "--scanner-mode", help="single_pass or sliding_window (the paper's 120k/60k windows).", show_default="single_pass"),
    device: Optional[str] = typer.Option(None, "--device", help="Device of the scanner and dense models: auto (cuda when there is a GPU), cpu, cuda.", show_default="auto"),
    dense_precision: Optional[str] = typer.Option(None, "--dense-precision", help="float32, or bfloat16 (autocast: up to 2.5x faster on a CPU with AMX; on a GPU float32 is faster).", show_default="float32"),
    include_unscored: bool = typer.Option(False, "--include-unscored", help="Also evaluate benchmarks where no metric applies with these options (predictions only)."),
    config_file: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="YAML file of EvalConfig settings (linkscan.evaluation.run); the options given here win."),
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any EvalConfig setting by its dotted name, e.g. --set bootstrap_samples=200 --set corpus.chunk_tokens=2000 (last word)."),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint: enables the answer-and-judge protocol."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="Model that answers and judges (with --llm-base-url)."),
    llm_api_key_env: str = typer.Option("OPENAI_API_KEY", "--llm-api-key-env", help="Environment variable holding the API key (local servers need none)."),
) -> None:
    """Score retrievers on a benchmark suite; write predictions, tables, plots and the config.

    Exit 0: all measured; 2: bad input, nothing done; 3: finished with skips (named in the report);
    75: LLM requests to retry (rerun later); 130/143: interrupted by SIGINT/SIGTERM, finished
    benchmarks kept (rerun to resume)."""
    from linkscan.evaluation.benchmarks import BenchmarkError
    from linkscan.evaluation.finished import OutputFolderError
    from linkscan.evaluation.retrievers import RetrieverError
    from linkscan.evaluation.run import EvalConfig, run_evaluation, run_id
    from linkscan.flows.runtime import resolve_data_root
    from linkscan.pipeline.settings import SettingsError, load_settings
    from linkscan.training.checkpoint import CheckpointError

    if bool(llm_base_url) != bool(llm_model):
        fail("--llm-base-url and --llm-model go together (the LLM protocol needs both)")
    root = resolve_data_root(data)
    llm = None
    if llm_base_url:
        llm = {"base_url": llm_base_url, "model": llm_model, "api_key_env": llm_api_key_env}
    options = {
        "benchmarks": str(benchmarks.resolve()),
        "only": [name.strip() for name in only.split(",") if name.strip()] if only else None,
        "retrievers": retriever or None, "k": k, "max_questions": max_questions, "seed": seed,
        "corpus.tokenizer": tokenizer, "scanner_mode": scanner_mode, "dense_precision": dense_precision,
        "include_unscored": include_unscored or None, "llm": llm,
    }
    try:
        config = load_settings(EvalConfig, config_file, options, sets or ())
    except SettingsError as error:
        fail(str(error))
    # The device: the option, else the file's or --set's, else auto (CUDA for models when there is a GPU).
    chosen_device = device or (config.device if "device" in config.model_fields_set else "auto")
    config = config.model_copy(update={"device": resolve_device(chosen_device, config.retrievers)})
    tokenizer = config.corpus.tokenizer
    check_scanner_checkpoints(config.retrievers)
    loaded_tokenizer = load_tokenizer_or_fail(tokenizer)
    rid = run_id(config)
    out_dir = out or root / "evals" / rid
    _quiet_model_loading()
    client = None
    if config.llm is not None:
        from linkscan.generators.llm.client import LLMClient
        from linkscan.generators.llm.config import MissingAPIKeyError, resolve_api_key

        try:
            api_key = resolve_api_key(config.llm, os.environ)
        except MissingAPIKeyError as error:
            fail(str(error))
        client = LLMClient(config.llm, api_key=api_key, cache_path=root / "cache" / "llm.sqlite")
    try:
        with interruptible(detail=_finished_line(out_dir, rid)):
            result = run_evaluation(config, out_dir, tokenizer=loaded_tokenizer, llm_client=client, progress=typer.echo)
    except (BenchmarkError, RetrieverError, OutputFolderError, FileNotFoundError) as error:
        fail(str(error))
    except CheckpointError as error:
        fail(f"--retriever scanner: {error}")
    finally:
        if client is not None:
            client.close_cache()
    _print_outcome(result, k, out_dir)
    if not result.complete:
        code = EXIT_PENDING if result.waiting else EXIT_INCOMPLETE
        typer.echo(f"incomplete: some benchmarks or questions were not measured (listed above and in {out_dir / 'report.md'}); "
                   f"exit {code}", err=True)
        raise typer.Exit(code)


def retrieve(
    retriever: str = typer.Option(..., "--retriever", help="scanner:<checkpoint>, bm25, bm25-chunks, dense[:<path>], dense-chunks[:<path>], random."),
    document: Path = typer.Option(..., "--document", exists=True, dir_okay=False, help="A document file (.txt, .md, .html, or the first record of .jsonl/.parquet)."),
    question: str = typer.Option(..., "--question", help="The question."),
    k: int = typer.Option(20, "--k", min=1, help="How many units to print."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", help="Tokenizer hub id or local tokenizer.json."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random retriever."),
    device: str = typer.Option("auto", "--device", help="Device of the scanner and dense models: auto (cuda when there is a GPU), cpu, cuda."),
) -> None:
    """Print the top units of one document for one question, best first, with their scores."""
    from rich.console import Console
    from rich.table import Table

    from linkscan.evaluation.metrics import rank_units
    from linkscan.evaluation.retrievers import Query, RetrieverError, make_retriever
    from linkscan.evaluation.units import segment_document
    from linkscan.pipeline.config import CorpusConfig
    from linkscan.pipeline.drops import Drops
    from linkscan.pipeline.readers import read_documents
    from linkscan.pipeline.segment import Segmenter
    from linkscan.training.checkpoint import CheckpointError

    if retriever == "oracle":
        fail("the oracle needs gold evidence; use it with `linkscan evaluate`")
    check_scanner_checkpoints([retriever])
    loaded = load_tokenizer_or_fail(tokenizer)
    _quiet_model_loading()
    try:
        chosen = make_retriever(retriever, seed=seed, tokenizer=loaded, device=resolve_device(device, [retriever]))
        chosen.prepare()
    except RetrieverError as error:
        fail(str(error))
    except CheckpointError as error:
        fail(f"--retriever {retriever}: {error}")
    config = CorpusConfig(tokenizer=tokenizer)
    drops = Drops()
    raw = next(iter(read_documents(document, config, drops)), None)
    if raw is None:
        reasons = ", ".join(drops.as_dict()) or "no documents"
        fail(f"{document}: nothing readable ({reasons}); give a UTF-8 .txt, .md, .html, .jsonl or .parquet file")
    units = segment_document(str(document), raw.text, Segmenter(config, loaded))
    [scores] = chosen.score_document(units, [Query("cli", question)])
    table = Table("rank", "unit", "score", "text", title=f"{chosen.name}: top {min(k, len(units))} of {len(units)} units ({units.n_tokens:,} tokens)")
    for rank, index in enumerate(rank_units(scores)[:k], 1):
        table.add_row(str(rank), str(int(index)), f"{scores[index]:.4f}", " ".join(units.units[index].split()))
    Console(width=160).print(table)
