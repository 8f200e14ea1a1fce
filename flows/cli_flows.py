"""`linkscan serve` and `linkscan demo`: run the deployments, or the generate flow on the demo corpus."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer


def parse_defaults(values: list[str]) -> dict[str, dict]:
    """``FLOW=JSON`` pairs (``train={"options": {"max_steps": 5}}``) as {flow: parameters}."""
    defaults: dict[str, dict] = {}
    for value in values:
        flow_name, sep, text = value.partition("=")
        try:
            parameters = json.loads(text) if sep else None
        except json.JSONDecodeError as error:
            raise typer.BadParameter(f"{value!r}: the part after '=' is not JSON ({error.msg})") from None
        if not isinstance(parameters, dict):
            raise typer.BadParameter(f"{value!r}: use FLOW={{\"parameter\": value, ...}}, e.g. train={{\"options\": {{\"max_steps\": 5}}}}")
        defaults.setdefault(flow_name, {}).update(parameters)
    return defaults


def serve(
    start_server: bool = typer.Option(
        False, "--start-server", help="Start `prefect server start` on 127.0.0.1 first (stopped on exit)."
    ),
    home: Path = typer.Option(
        Path(".prefect"), "--home", help="PREFECT_HOME for --start-server: the server's SQLite database lives here."
    ),
    port: int = typer.Option(4200, "--port", help="Port for --start-server."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many flow runs at once."),
    defaults: List[str] = typer.Option(
        [], "--defaults", help='Default parameters of a deployment, FLOW=JSON, e.g. train=\'{"options": {"max_steps": 5}}\'; repeatable.'
    ),
) -> None:
    """Serve the generate/default, train/default and evaluate/default deployments in one process.

    Without --start-server it uses the Prefect API in PREFECT_API_URL (event triggers need a real
    server; see `make serve`).
    """
    from linkscan.flows.server import start_server as start, stop_process, wait_healthy

    deployment_defaults = parse_defaults(defaults)
    process = None
    if start_server:
        home = home.resolve()
        process, api_url = start(home, port=port)
        typer.echo(f"starting the Prefect server at {api_url} (PREFECT_HOME={home}, log {home / 'server.log'})")
        try:
            wait_healthy(api_url, process=process)
        except (RuntimeError, TimeoutError) as error:
            stop_process(process)
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        # Set before prefect is imported, so this process and its flow runs use that server.
        os.environ.update({"PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)})
        typer.echo(f"UI: {api_url.removesuffix('/api')}   run: PREFECT_API_URL={api_url} prefect deployment run 'generate/default'")
    elif not os.environ.get("PREFECT_API_URL"):
        typer.echo(
            "warning: PREFECT_API_URL is not set, so Prefect uses a temporary server that event triggers do not reach; "
            "use `make serve` or `linkscan serve --start-server`",
            err=True,
        )
    if "prefect" in sys.modules and start_server:
        typer.echo("warning: prefect was imported before the server started; settings may point elsewhere", err=True)
    from linkscan.flows.deployments import serve_deployments

    try:
        serve_deployments(deployment_defaults, limit=limit)
    finally:
        if process is not None:
            stop_process(process)


def demo(
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: $LINKSCAN_DATA, else ./data)."),
    llm: bool = typer.Option(False, "--llm", help="Generate with a real local model (llama.cpp's server with Qwen2.5-Coder-0.5B-Instruct; the llm-local extra) instead of the offline generator."),
) -> None:
    """Generate a dataset from the embedded demo corpus with the offline generator, and show it.

    With --llm: start a local OpenAI-compatible server with a small real model, generate a few
    examples with the LLM back end (no API key), and show them."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from linkscan.flows.runtime import resolve_data_root

    root = resolve_data_root(str(data) if data else None)
    if llm:
        typer.echo(demo_llm(root))
        return
    from linkscan.flows.generate import generate

    result = generate(data_root=str(root))
    typer.echo(demo_summary(Path(result["path"]), root))
    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("its linkscan.dataset.published event went to a temporary Prefect server (gone now); with "
                   "`make serve` running, `prefect deployment run 'generate/default'` announces this version there, "
                   "which starts training on it")
    typer.echo(next_steps(root))


def _here(program: str) -> str:
    """How to type ``program`` of this environment from the current folder (``.venv/bin/linkscan``
    when it is not on PATH), so the printed commands run as pasted."""
    import shutil

    mine = Path(sys.executable).with_name(program)
    if shutil.which(program) == str(mine) or not mine.exists():
        return program
    try:
        return str(mine.relative_to(Path.cwd()))
    except ValueError:
        return str(mine)


def next_steps(data_root: Path) -> str:
    linkscan = _here("linkscan")
    return "\n".join([
        "next:",
        f"  1. your own corpus: {linkscan} generate --corpus 'docs/*.jsonl' --name mine --data {data_root} "
        "--tokenizer ../shared/tokenizers/gpt-neox-20b/tokenizer.json",
        "  2. the chain under Prefect: `make serve` in one shell, then in another: "
        f"PREFECT_API_URL=http://127.0.0.1:4200/api {_here('prefect')} deployment run 'generate/default'",
        f"  3. train and evaluate: {linkscan} train --dataset {data_root}/datasets/demo --out {data_root}/models/demo/cpu "
        f"--preset cpu-example; {linkscan} evaluate --benchmarks ../shared/evalsets/dev --only paperqa_4k "
        "--retriever bm25 --retriever random --tokenizer ../shared/tokenizers/gpt-neox-20b/tokenizer.json",
    ])


def demo_llm(data_root: Path) -> str:
    """Two short demo documents through the LLM back end against the local server; the summary."""
    from linkscan.flows.cli_errors import EXIT_FAILED, fail
    from linkscan.flows.demo import bundled_tokenizer, build_llm_demo_corpus, demo_corpus_dir
    from linkscan.flows.local_llm import LocalLLMError, LocalLLMServer, missing_reason
    from linkscan.generators.config import GenerateConfig
    from linkscan.generators.llm.config import LLMConfig
    from linkscan.generators.progress import GenerationProgress, show_progress
    from linkscan.generators.stage import GenerationError, run_generation
    from linkscan.pipeline.config import CorpusConfig

    reason = missing_reason()
    if reason:
        fail(f"{reason} (`make demo-llm` installs it)")
    corpus = build_llm_demo_corpus(demo_corpus_dir(data_root) / "llm")
    typer.echo("starting the local LLM server (llama.cpp, Qwen2.5-Coder-0.5B-Instruct, CPU) ...", err=True)
    try:
        with LocalLLMServer(n_ctx=4096) as server:
            config = GenerateConfig(
                name="demo-llm", corpus=[str(corpus)], generator="llm", method="chunk", num_shards=1,
                corpus_config=CorpusConfig(tokenizer=str(bundled_tokenizer(data_root)), chunk_tokens=800),
                # One request at a time (the server has one slot); CPU answers take tens of seconds.
                llm=LLMConfig(base_url=server.url, model=server.model, concurrency=1, timeout_s=600,
                              max_attempts=3, max_tokens=256),
            )
            typer.echo(f"generating with {server.model} at {server.url} (one request at a time; a few minutes)", err=True)
            result = run_generation(config, data_root, progress=lambda plan: show_progress(
                GenerationProgress([p for shard in plan.shard_inputs for p in shard])))
    except LocalLLMError as error:
        fail(str(error), EXIT_FAILED)
    except GenerationError as error:
        fail(str(error), EXIT_FAILED)
    return "\n".join([
        demo_summary(result.path, data_root),
        "what this is: examples written by a 0.5B-parameter model on a CPU. Expect questions that are "
        "vague or miss the point; many answers fail validation and are counted as drops (dataset.json: "
        "drop_reasons, attempt_reasons). It shows the protocol end to end (structured output, validation, "
        "the cache), not the quality a real model gives (benchmarks/BENCHMARKS.md measures a 1.5B one). The same settings point at vLLM, Ollama or OpenAI with --llm-base-url and --llm-model "
        "(README, 'Back ends').",
    ])


def demo_summary(path: Path, data_root: Path) -> str:
    """What was made and how to look at it, with three sample questions read back through DuckDB."""
    import duckdb

    manifest = json.loads((path / "dataset.json").read_text())
    name, version = manifest["name"], manifest["version"]
    rows: dict[str, int] = {}
    for shard in manifest["shards"]:
        rows[shard["artifact"]] = rows.get(shard["artifact"], 0) + shard["rows"]
    lines = [f"dataset {name} version {version}", f"  folder: {path}"]
    lines += [f"  {artifact}: {count:,} rows" for artifact, count in sorted(rows.items())]
    for title in ("counts", "drop_reasons"):
        values = manifest.get(title) or {}
        if values:
            lines.append(f"  {title.replace('_', ' ')}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    glob = path / "data" / "train-*.parquet"
    query = f"SELECT question, positives, link_distance FROM '{glob}' ORDER BY example_id LIMIT 3"
    if rows.get("examples"):
        lines.append("sample questions (DuckDB):")
        for question, positives, distance in duckdb.sql(query).fetchall():
            lines.append(f"  - {question}  [evidence units {positives}, link distance {distance}]")
    python = _here("python")
    lines += [
        "look at it:",
        f"  {_here('linkscan')} inspect {name} --data {data_root}",
        f"  {python} -c \"import duckdb; duckdb.sql(\\\"{query}\\\").show()\"",
        f"  {python} -c \"import datasets; print(datasets.load_dataset('parquet', data_files='{glob}'))\"",
    ]
    return "\n".join(lines)
