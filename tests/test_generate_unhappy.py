"""A published version is complete and correct, or it does not exist: the unhappy paths of `generate`.

Real dev-corpus text, the real tokenizer, and the local OpenAI-compatible test server with injected
faults. Each test names the failure; each checks that nothing is published, what the user is told,
and that rerunning the same command finishes with exactly what a healthy run gives.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkscan.generators.config import GenerateConfig
from linkscan.generators.llm.config import LLMConfig
from linkscan.generators.stage import EmptyDatasetError, PendingChunksError, run_generation
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.store import open_dataset
from tests.generators_data import dev_document_text
from tests.llm_server import LLMTestServer, Reply, request_stage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dev_corpus) -> Path:
    """Two files, one document each (two shards), of real dev-corpus text."""
    folder = tmp_path_factory.mktemp("corpus")
    for name, doc_id in (("court.jsonl", "scotus-2009-berghuis-v-thompkins"), ("rfc.jsonl", "rfc1144")):
        text = dev_document_text(dev_corpus, doc_id, 16_000)
        (folder / name).write_text(json.dumps({"id": doc_id, "text": text}) + "\n")
    return folder


def llm_config(corpus: Path, server: LLMTestServer, tokenizer_path: Path, **changes) -> GenerateConfig:
    config = GenerateConfig(
        name="unhappy", corpus=[str(corpus)], generator="llm", num_shards=2, concurrency=4,
        corpus_config=CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=1500),
        llm=LLMConfig(base_url=server.url, model="test-model", concurrency=4, timeout_s=5, max_attempts=2,
                      backoff_base_s=0.01, backoff_max_s=0.02),
    )
    return config.model_copy(update=changes)


def published(data_root: Path, name: str = "unhappy") -> list[Path]:
    return sorted(p.parent for p in (data_root / "datasets" / name).glob("*/dataset.json"))


def rows(path: Path) -> list[dict]:
    table = open_dataset(path).read_table("examples")
    return sorted(table.to_pylist(), key=lambda r: r["example_id"])


@pytest.fixture(scope="module")
def healthy(corpus, tokenizer_path, tmp_path_factory):
    """What a run against a healthy server gives from the start (its own data folder and cache)."""
    with LLMTestServer() as server:
        return run_generation(llm_config(corpus, server, tokenizer_path), tmp_path_factory.mktemp("healthy"))


def test_a_total_outage_publishes_nothing_and_one_rerun_gives_the_healthy_runs_examples(
        corpus, tokenizer_path, tmp_path, healthy):
    with LLMTestServer() as server:
        server.inject(Reply(status=503), times=10**9)
        config = llm_config(corpus, server, tokenizer_path)
        with pytest.raises(PendingChunksError) as raised:
            run_generation(config, tmp_path)
        assert published(tmp_path) == [] and not (tmp_path / "datasets" / "unhappy" / "LATEST").exists()
        error = raised.value
        assert error.shards == [0, 1] and set(error.pending) == {"server_error"}
        assert sum(error.pending.values()) == healthy.manifest["counts"]["chunks"]  # every chunk waits
        assert "Rerun the same command to retry only those" in str(error)
        server.clear_faults()
        resumed = run_generation(config, tmp_path)
    assert resumed.newly_published and resumed.version == healthy.version
    assert rows(resumed.path) == rows(healthy.path)
    digests = lambda result: {s["file"]: s["sha256"] for s in result.manifest["shards"]}
    assert digests(resumed) == digests(healthy)  # byte for byte
    assert resumed.manifest["complete"] is True and resumed.manifest["pending_chunks"] == {}


def test_flaky_rate_limits_leave_chunks_pending_and_the_rerun_asks_only_for_those(corpus, tokenizer_path, tmp_path, healthy):
    with LLMTestServer() as server:
        # Every question request is refused for a while: the link answers arrive and are cached.
        server.inject(Reply(status=429, headers={"retry-after": "0"}), times=10**9,
                      match=lambda request: request_stage(request) == "question")
        config = llm_config(corpus, server, tokenizer_path)
        with pytest.raises(PendingChunksError) as raised:
            run_generation(config, tmp_path)
        assert set(raised.value.pending) == {"rate_limited"}
        assert published(tmp_path) == []
        answered_before = {json.dumps(r["messages"]) for r in server.received
                           if request_stage(r) == "links"}
        assert answered_before  # links were answered (and cached) before the questions failed
        server.clear_faults()
        server.received.clear()
        resumed = run_generation(config, tmp_path)
    asked_again = [r for r in server.received if request_stage(r) == "links" and json.dumps(r["messages"]) in answered_before]
    assert asked_again == []  # the links already answered came from the cache
    assert resumed.manifest["llm"]["usage"]["stages"]["links"]["cache_hits"] >= len(answered_before)
    assert rows(resumed.path) == rows(healthy.path)


def test_allow_partial_publishes_a_separate_version_that_says_it_is_partial(corpus, tokenizer_path, tmp_path, healthy):
    with LLMTestServer() as server:
        server.inject(Reply(status=503), times=10**9, match=lambda request: "RFC" in json.dumps(request["messages"]))
        result = run_generation(llm_config(corpus, server, tokenizer_path, allow_partial=True), tmp_path)
    manifest = result.manifest
    assert result.version != healthy.version  # never in the place of the complete version
    assert manifest["complete"] is False
    assert set(manifest["pending_chunks"]) == {"server_error"} and sum(manifest["pending_chunks"].values()) >= 1
    assert 0 < manifest["counts"]["examples"] < healthy.manifest["counts"]["examples"]
    assert "Partial version" in (result.path / "README.md").read_text()


def test_a_run_that_yields_no_examples_publishes_nothing_and_names_the_cause(corpus, tokenizer_path, tmp_path):
    with LLMTestServer() as server:
        server.inject(Reply(content='{"links": []}'), times=10**9, match=lambda request: request_stage(request) == "links")
        with pytest.raises(EmptyDatasetError, match=r"0 examples: none of the \d+ chunks of 2 documents gave one "
                                                    r"\(links_llm_no_links: \d+\)"):
            run_generation(llm_config(corpus, server, tokenizer_path), tmp_path)
    assert published(tmp_path) == []


def test_an_input_that_is_all_dropped_publishes_nothing_and_names_the_drops(tokenizer_path, tmp_path):
    (tmp_path / "tiny.jsonl").write_text(json.dumps({"text": "Too short to be a document."}) + "\n")
    config = GenerateConfig(name="tiny", corpus=[str(tmp_path / "tiny.jsonl")],
                            corpus_config=CorpusConfig(tokenizer=str(tokenizer_path)))
    with pytest.raises(EmptyDatasetError, match=r"every document was dropped \(too_short: 1\)"):
        run_generation(config, tmp_path / "data")
    assert published(tmp_path / "data", "tiny") == []


def test_a_partial_version_after_a_complete_one_never_becomes_latest(corpus, tokenizer_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app
    from linkscan.pipeline.store import latest_version

    def generate(server: LLMTestServer, *extra: str):
        return CliRunner().invoke(app, [
            "generate", "--corpus", str(corpus), "--data", str(tmp_path), "--name", "unhappy", "--tokenizer",
            str(tokenizer_path), "--chunk-tokens", "1500", "--num-shards", "2", "--generator", "llm",
            "--llm-base-url", server.url, "--llm-model", "test-model", "--set", "llm.max_attempts=2",
            "--set", "llm.backoff_base_s=0.01", "--set", "llm.backoff_max_s=0.02", *extra])

    with LLMTestServer() as server:
        first = generate(server)
        assert first.exit_code == 0, first.output
        complete = open_dataset("unhappy", data_root=tmp_path)
        (tmp_path / "cache" / "llm.sqlite").unlink()  # the partial run below must really miss answers
        server.inject(Reply(status=503), times=10**9, match=lambda request: "RFC" in json.dumps(request["messages"]))
        partial = generate(server, "--allow-partial")
        server.clear_faults()
        assert partial.exit_code == 0, partial.output
        partial_path = Path(dict(line.split(" ", 1) for line in partial.stdout.splitlines())["path"])
        assert open_dataset(partial_path).manifest["complete"] is False
        assert latest_version(tmp_path, "unhappy") == complete.version
        latest = open_dataset("unhappy", data_root=tmp_path)
        assert latest.path == complete.path and latest.num_rows() == complete.manifest["counts"]["examples"]
        assert f"LATEST still names {complete.version}, the complete version" in partial.stderr

        again = generate(server)  # the complete command, rerun
        assert again.exit_code == 0 and "already published" in again.stderr
        assert latest_version(tmp_path, "unhappy") == complete.version
        (tmp_path / "datasets" / "unhappy" / "LATEST").write_text(f"{partial_path.name}\n")  # as linkscan 0.x left it
        assert generate(server).exit_code == 0
    assert latest_version(tmp_path, "unhappy") == complete.version
