"""`linkscan generate --generator llm --llm-base-url URL --llm-model NAME` against the test server."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from linkscan.pipeline.store import open_dataset
from tests.generators_data import dev_document_text
from tests.llm_server import LLMTestServer, Reply

KEY = "sk-cli-test-key-5d1e"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dev_corpus):
    folder = tmp_path_factory.mktemp("cli-corpus")
    text = dev_document_text(dev_corpus, "scotus-2009-berghuis-v-thompkins", 14_000)
    (folder / "court.jsonl").write_text(json.dumps({"id": "court", "title": "Berghuis v. Thompkins", "text": text}) + "\n")
    return folder


def generate(server, corpus, tokenizer_path, data):
    return CliRunner().invoke(app, [
        "generate", "--generator", "llm", "--llm-base-url", server.url, "--llm-model", "test-model",
        "--corpus", str(corpus), "--tokenizer", str(tokenizer_path), "--data", str(data), "--name", "cli-llm",
        "--chunk-tokens", "1500",
    ], env={"OPENAI_API_KEY": KEY})


def test_generate_with_the_llm_flags_publishes_llm_examples(corpus, tokenizer_path, tmp_path):
    with LLMTestServer() as server:
        result = generate(server, corpus, tokenizer_path, tmp_path)
    assert result.exit_code == 0, result.output
    assert server.authorizations == {f"Bearer {KEY}"}
    path = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("path ")][0]
    dataset = open_dataset(path)
    assert dataset.manifest["generator"] == "llm:test-model"
    assert dataset.manifest["config"]["llm"]["base_url"] == server.url
    assert dataset.num_rows("examples") > 0
    assert KEY not in result.output


def test_a_rejected_key_fails_with_a_message_naming_the_variable(corpus, tokenizer_path, tmp_path):
    with LLMTestServer() as server:
        server.inject(Reply(status=401), times=10_000)
        result = generate(server, corpus, tokenizer_path, tmp_path)
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output and KEY not in result.output
