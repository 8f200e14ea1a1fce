"""`linkscan generate` on a small real corpus: output, config file, overrides and errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from linkscan.pipeline.store import open_dataset
from tests.generators_data import rfc_corpus

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast


@pytest.fixture(scope="module")
def corpus(dev_corpus, tmp_path_factory) -> Path:
    """One JSONL file with the first 30k characters of two RFCs, written at test time."""
    return rfc_corpus(dev_corpus, tmp_path_factory.mktemp("cli-corpus"), 2, 30_000, one_file=True)


def invoke(*args: str):
    return CliRunner().invoke(app, ["generate", *args])


def printed(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines() if line.startswith(("version ", "path ")))


def test_generate_prints_version_and_path_of_a_published_dataset(corpus, tokenizer_path, tmp_path):
    result = invoke("--corpus", str(corpus), "--data", str(tmp_path), "--name", "rfc",
                    "--tokenizer", str(tokenizer_path), "--chunk-tokens", "1200", "--seed", "5")
    assert result.exit_code == 0, result.output
    shown = printed(result.stdout)
    dataset = open_dataset(Path(shown["path"]))
    assert dataset.version == shown["version"] and dataset.name == "rfc"
    assert dataset.manifest["config"]["seed"] == 5
    assert dataset.manifest["config"]["corpus_config"]["chunk_tokens"] == 1200
    assert dataset.num_rows("examples") == dataset.manifest["counts"]["examples"] > 0


def test_config_file_settings_apply_and_options_override_them(corpus, tokenizer_path, tmp_path):
    config = tmp_path / "generate.yaml"
    config.write_text(
        f"name: from-file\nmethod: chunk\nseed: 2\ncorpus: [{json.dumps(str(corpus))}]\n"
        f"corpus_config:\n  tokenizer: {json.dumps(str(tokenizer_path))}\n  chunk_tokens: 1200\n"
    )
    result = invoke("--config", str(config), "--data", str(tmp_path / "data"), "--seed", "9")
    assert result.exit_code == 0, result.output
    manifest = open_dataset(Path(printed(result.stdout)["path"])).manifest
    assert (manifest["name"], manifest["method"], manifest["config"]["seed"]) == ("from-file", "chunk", 9)


def test_missing_corpus_fails_with_a_hint(tmp_path):
    result = invoke("--data", str(tmp_path), "--name", "nothing")
    assert result.exit_code == 2
    assert "--corpus" in result.output


def test_bad_method_names_the_field(corpus, tmp_path):
    result = invoke("--corpus", str(corpus), "--data", str(tmp_path), "--method", "graph")
    assert result.exit_code == 2
    assert "method" in result.output and "link" in result.output


def test_several_corpus_paths_follow_one_flag(corpus, tokenizer_path, tmp_path):
    second = tmp_path / "copy.jsonl"
    second.write_text(corpus.read_text().replace('"rfc', '"copy-rfc'))
    result = invoke("--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer_path), "--chunk-tokens", "1200",
                    "--corpus", str(corpus), str(second))
    assert result.exit_code == 0, result.output
    manifest = open_dataset(Path(printed(result.stdout)["path"])).manifest
    assert manifest["config"]["corpus"] == [str(corpus), str(second)]
    read = " ".join(piece for shard in manifest["shard_inputs"] for piece in shard)
    assert str(corpus) in read and str(second) in read


def test_two_processes_with_different_hash_seeds_publish_identical_bytes(corpus, tokenizer_path, tmp_path):
    # Python salts str hashes per process: set and dict iteration must never reach the output.
    import os
    import subprocess
    import sys

    from tests.store_data import REPO

    digests = []
    for seed in ("1", "2"):
        run = subprocess.run(
            [sys.executable, "-m", "linkscan.flows.cli", "generate", "--corpus", str(corpus), "--data", str(tmp_path / seed),
             "--name", "rfc", "--tokenizer", str(tokenizer_path), "--chunk-tokens", "1200"],
            cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        manifest = open_dataset(Path(printed(run.stdout)["path"])).manifest
        digests.append((manifest["version"], {s["file"]: s["sha256"] for s in manifest["shards"]}))
    assert digests[0] == digests[1] and len(digests[0][1]) == 8  # one file of two documents: two shards


def test_progress_is_reported_in_lines_when_stderr_is_not_a_terminal(corpus, tokenizer_path, tmp_path):
    import subprocess
    import sys

    from tests.store_data import REPO

    run = subprocess.run(
        [sys.executable, "-m", "linkscan.flows.cli", "generate", "--corpus", str(corpus), "--data", str(tmp_path),
         "--name", "rfc", "--tokenizer", str(tokenizer_path), "--chunk-tokens", "1200"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = open_dataset(Path(printed(run.stdout)["path"])).manifest
    counts = manifest["counts"]
    size = corpus.stat().st_size / 1e6
    (last,) = [line for line in run.stderr.splitlines() if line.startswith("progress: ")][-1:]
    assert last.startswith(f"progress: {counts['documents']:,} documents, {counts['chunks']:,} chunks, "
                           f"{counts['examples']:,} examples; {size:,.1f} of {size:,.1f} MB (")


def test_progress_counts_time_left_from_the_bytes_read():
    from linkscan.generators.progress import GenerationProgress
    from linkscan.pipeline.sharding import InputPiece

    now = [100.0]
    pieces = [InputPiece("a.jsonl", size=30_000_000), InputPiece("b.jsonl", size=10_000_000)]
    progress = GenerationProgress(pieces, clock=lambda: now[0])
    progress.read(pieces[0], 0.5)  # 15 MB in 10 s: 1.5 MB/s, 25 MB to go
    progress.document(chunks=12, examples=9)
    now[0] += 10
    assert progress.line() == "1 documents, 12 chunks, 9 examples; 15.0 of 40.0 MB (1.50 MB/s), 0:16 left"
    progress.read(pieces[0], 1.0)
    progress.skip([pieces[1]])  # finished by an earlier run: done, but not in the speed
    assert progress.line() == "1 documents, 12 chunks, 9 examples; 40.0 of 40.0 MB (3.00 MB/s)"


def test_progress_in_a_log_is_one_unwrapped_line_per_report_with_the_llm_totals():
    import io
    import time

    from rich.console import Console

    from linkscan.generators.llm.usage import UsageTracker
    from linkscan.generators.progress import GenerationProgress, show_progress
    from linkscan.pipeline.sharding import InputPiece

    stream = io.StringIO()
    console = Console(file=stream, width=80)  # a file: not a terminal, 80 columns as rich assumes for one
    pieces = [InputPiece("corpus/books.jsonl", size=312_000_000)]
    progress = GenerationProgress(pieces)
    tracker = UsageTracker()
    links = tracker.stage("links")
    links.requests, links.cache_hits, links.prompt_tokens, links.completion_tokens = 1_200, 34, 2_000_000, 150_000
    links.failures["server_error"] = 3
    progress.llm.register(tracker)
    with show_progress(progress, console=console, interval_s=0.05):
        progress.read(pieces[0], 0.25)
        progress.document(chunks=5_310, examples=3_622)
        time.sleep(0.3)
    output = stream.getvalue()
    assert "\r" not in output
    lines = output.splitlines()
    assert len(lines) >= 2 and all(line.startswith("progress: 1 documents, 5,310 chunks, 3,622 examples; ")
                                   for line in lines)  # one whole line per report, however long
    assert lines[-1].split(" left")[1] == (
        "; LLM 1,234 done, 0 in flight, 3 failed, 34 cache hits, 2,150,000 tokens, $0.0000")
