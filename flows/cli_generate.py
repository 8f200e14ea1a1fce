"""`linkscan generate`: a corpus in, a published training dataset version out (no Prefect needed).

Settings come from the defaults, then the YAML file of ``--config``, then the command-line options
given; the resolved config lands in the manifest. The run resumes a killed run of the same version.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from linkscan.generators.config import GenerateConfig


_DEFAULTS = GenerateConfig()  # what an option left out means (shown in --help)


def generate(
    paths: Optional[List[str]] = typer.Argument(None, hidden=True, help="More input paths (so `--corpus a b c` works)."),
    corpus: Optional[List[str]] = typer.Option(None, "--corpus", metavar="PATH", help="Input files, folders or globs (text, Markdown, HTML, JSONL, Parquet); `--corpus a b` or `--corpus a --corpus b`."),
    data: Optional[str] = typer.Option(None, "--data", metavar="DIR", help="Data folder.", show_default="$LINKSCAN_DATA, else ./data"),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="Dataset name (a folder under <data>/datasets).", show_default=_DEFAULTS.name),
    method: Optional[str] = typer.Option(None, "--method", metavar="link|chunk|pair", help="link (the paper's), chunk or pair (ablations).", show_default=_DEFAULTS.method),
    generator: Optional[str] = typer.Option(None, "--generator", metavar="offline|llm", help="offline (no LLM) or llm.", show_default=_DEFAULTS.generator),
    chunk_tokens: Optional[int] = typer.Option(None, "--chunk-tokens", metavar="N", min=8, help="Tokens per chunk (the paper uses 2000, 5000, 10000).", show_default=str(_DEFAULTS.corpus_config.chunk_tokens)),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", metavar="ID_OR_PATH", help="Tokenizer hub id or local tokenizer.json / folder.", show_default=_DEFAULTS.corpus_config.tokenizer),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Seed of every random choice.", show_default=str(_DEFAULTS.seed)),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", metavar="N", min=1, help="Shards per artifact, cut over the corpus content (JSONL at line starts, Parquet at row groups); fewer when it cannot be cut so finely.", show_default=str(_DEFAULTS.num_shards)),
    config_file: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="YAML file with the same settings, or a version's dataset.json; options given here override it."),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", metavar="URL", help="OpenAI-compatible endpoint (with --generator llm)."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", metavar="NAME", help="Model name on that endpoint (with --generator llm)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Publish even when chunks still wait for the LLM (a separate version, marked complete: false; not trained on by default)."),
    repair: bool = typer.Option(False, "--repair", help="Rebuild the damaged shards of this (published) version in place, byte for byte."),
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any setting by its dotted name, e.g. --set corpus_config.chunk_tokens=1000 --set llm.concurrency=4 (after --config and the options)."),
) -> None:
    """Generate a training dataset from a corpus and publish it; prints the version id and its path.

    \b
    Exit codes: 0 done; 1 nothing published (the line says why); 2 bad input or
    settings; 75 chunks wait for the LLM (rerun later); 130/143 interrupted (rerun
    to resume).
    """
    from linkscan.flows.cli_errors import EXIT_FAILED, EXIT_PENDING, fail, interruptible, log_warnings_once, os_error_line
    from linkscan.flows.runtime import resolve_data_root
    from linkscan.generators.config import ConfigFileError, load_config
    from linkscan.generators.stage import EmptyDatasetError, GenerationError, PendingChunksError, run_generation
    from linkscan.pipeline.store import StoreError

    log_warnings_once()
    overrides = {
        "corpus": [*(corpus or []), *(paths or [])] or None,
        "name": name,
        "method": method,
        "generator": generator,
        "seed": seed,
        "num_shards": num_shards,
        "corpus_config.chunk_tokens": chunk_tokens,
        "corpus_config.tokenizer": tokenizer,
        "llm.base_url": llm_base_url,
        "llm.model": llm_model,
        "allow_partial": allow_partial or None,
    }
    try:
        config = load_config(config_file, overrides, sets or ())
    except ConfigFileError as error:
        fail(str(error))
    from linkscan.generators.llm.client import LLMFatalError
    from linkscan.generators.progress import GenerationProgress, show_progress

    api_key = None
    if config.generator == "llm":
        from linkscan.generators.llm.config import MissingAPIKeyError, resolve_api_key

        try:
            api_key = resolve_api_key(config.llm, os.environ)
        except MissingAPIKeyError as error:
            fail(str(error))
    root = resolve_data_root(data)

    def progress(plan):  # documents, chunks, examples, MB/s, time left; the LLM table too (stderr)
        return show_progress(GenerationProgress([piece for shard in plan.shard_inputs for piece in shard]))

    try:
        with interruptible(data_root=root):
            if repair:
                _repair(config, root, api_key)
                return
            result = run_generation(config, root, api_key=api_key, progress=progress)
    except PendingChunksError as error:
        fail(str(error), EXIT_PENDING)
    except EmptyDatasetError as error:
        fail(str(error), EXIT_FAILED)
    except (GenerationError, ValueError, LLMFatalError) as error:  # LLMFatalError: bad key, model or URL
        fail(str(error))
    except StoreError as error:  # another writer of the version, a damaged store
        fail(str(error), EXIT_FAILED)
    except OSError as error:  # a full disk, a read-only folder
        from linkscan.pipeline.store import sweep_staging

        sweep_staging(root)
        fail(os_error_line(error, root), EXIT_FAILED)
    counts = result.manifest.get("counts", {})
    state = "published" if result.newly_published else "already published"
    if not result.manifest.get("complete", True):
        from linkscan.pipeline.store import latest_version

        state += f" as a PARTIAL version ({sum(result.manifest['pending_chunks'].values())} chunks pending"
        latest = latest_version(root, result.name)
        state += (f"; LATEST still names {latest}, the complete version" if latest else "; no complete version yet, so no LATEST")
        state += "; open this one by its folder, train on it only with --allow-partial)"
    typer.echo(
        f"{result.name} {result.version} {state}: {counts.get('examples', 0)} examples from "
        f"{counts.get('chunks', 0)} chunks of {counts.get('documents', 0)} documents",
        err=True,
    )
    typer.echo(f"version {result.version}")
    typer.echo(f"path {result.path}")


def _repair(config: GenerateConfig, root: Path, api_key: str | None) -> None:
    """``--repair``: the version's damaged shards, and the dataset's LATEST when it names no
    complete published version (missing, garbage, a path out of the folder)."""
    from linkscan.generators.stage import repair_version
    from linkscan.pipeline.store import LATEST, dataset_dir, latest_version, repair_latest

    latest_before = latest_version(root, config.name)
    repaired = repair_version(config, root, api_key=api_key)
    repair_latest(root, config.name, repaired.path.name)
    latest_after = latest_version(root, config.name)
    done = [f"repaired {len(repaired.repaired)} shard file(s)"] if repaired.repaired else []
    if latest_after != latest_before:
        done.append(f"{dataset_dir(root, config.name) / LATEST}: named no complete published version; it now names "
                    f"{latest_after}")
    typer.echo(f"{repaired.path}: {'; '.join(done) or 'nothing to repair'}; every shard now matches dataset.json",
               err=True)
    typer.echo(f"path {repaired.path}")
