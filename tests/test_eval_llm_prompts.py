"""The paper's answer prompts through a real HTTP server (tests/llm_server.py): a benchmark of the
paper's multiple-choice list gets the multiple-choice prompt and the same-option judge even without
an options list; open questions ask for the paper's answer type (issue 13, item 5). A server that
keeps failing leaves the benchmark unfinished, and the rerun retries only what failed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from linkscan.evaluation.benchmarks import BenchmarkError, load_paper_testset
from linkscan.evaluation.run import EvalConfig, run_evaluation
from linkscan.generators.llm.client import LLMClient
from linkscan.generators.llm.config import LLMConfig
from linkscan.pipeline.config import CorpusConfig
from tests.llm_server import LLMTestServer, Reply

STORY = ["Korvin opened the door of the tower at dawn.", "The guards slept through the morning.",
         "In the afternoon he met the queen in Paris.", "They spoke about the harvest and the war."]
TESTSET = {
    "quality": {  # the paper's MCQ benchmark: the options are in the question text
        "0": {"question": "Who opened the door? (A) the queen (B) Korvin (C) a guard (D) nobody",
              "answer": ["(B) Korvin"], "answer_type": "sentence", "full_text_sentences": STORY},
    },
    "narrativeqa": {
        "1": {"question": "What did they speak about?", "answer": ["the harvest and the war"],
              "answer_type": "paragraph", "full_text_sentences": STORY},
        "2": {"question": "Where did he meet the queen?", "answer": ["in Paris"],
              "answer_type": "sentence", "full_text_sentences": STORY},
    },
}
ANSWERS = {"Who opened the door?": "B. Korvin", "What did they speak about?": "They spoke about the harvest and the war.",
           "Where did he meet the queen?": "in Paris"}


def responder(request: dict) -> str:
    text = request["messages"][-1]["content"]
    question = re.search(r"^Question: (.*)$", text, re.MULTILINE).group(1)
    if "Excerpts:" in text:
        return f"REASON: the excerpts say so.\nANSWER: {ANSWERS[question.split(' (A)')[0]]}\n"
    truth = re.search(r"^Ground truth: (.*)$", text, re.MULTILINE).group(1)
    prediction = re.search(r"^Prediction: (.*)$", text, re.MULTILINE).group(1)
    same = truth.strip("()")[:1] == prediction[:1] if "same option(s) only" in text else truth.lower() in prediction.lower()
    return f"DECISION: {'YES' if same else 'NO'}"


@pytest.fixture
def testset(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "mambaretriever_test.json").write_text(json.dumps(TESTSET))
    return folder


def _evaluate(folder: Path, tokenizer_path: Path, server: LLMTestServer, out: Path, cache: Path | None = None, **llm):
    config_llm = LLMConfig(base_url=server.url, model="test-model", api_key_env="", **llm)
    config = EvalConfig(benchmarks=str(folder), retrievers=["bm25"], k=2, bootstrap_samples=20,
                        corpus=CorpusConfig(tokenizer=str(tokenizer_path)), llm=config_llm)
    client = LLMClient(config_llm, cache_path=cache)
    try:
        return run_evaluation(config, out, llm_client=client)
    finally:
        client.close_cache()


def _prompts(server: LLMTestServer) -> dict[str, list[str]]:
    """The prompts sent, by the question they ask about (answer prompt first, then the judge's)."""
    by_question: dict[str, list[str]] = {}
    for request in server.received:
        text = request["messages"][-1]["content"]
        by_question.setdefault(re.search(r"^Question: (.*)$", text, re.MULTILINE).group(1), []).append(text)
    return by_question


def test_a_paper_mcq_benchmark_gets_the_multiple_choice_prompt_and_the_same_option_judge(testset, tokenizer_path, tmp_path):
    with LLMTestServer(responder=responder) as server:
        result = _evaluate(testset, tokenizer_path, server, tmp_path / "out")
        answer, judge = _prompts(server)[TESTSET["quality"]["0"]["question"]]
    assert "a multiple-choice question about the document" in answer
    assert "(The options are given in the question.)" in answer
    assert "write the letter(s) of the correct option(s)" in answer
    assert "same option(s) only" in judge and "Ground truth: (B) Korvin" in judge and "Prediction: B. Korvin" in judge
    [row] = [r for r in result.rows if r["benchmark"] == "quality"]
    assert row["multiple_choice"] is True
    assert row["llm_correct"] == 1.0
    assert row["token_f1"] is None and row["answer_containment"] is None  # no short answer to contain


def test_open_questions_ask_for_the_papers_answer_type(testset, tokenizer_path, tmp_path):
    with LLMTestServer(responder=responder) as server:
        result = _evaluate(testset, tokenizer_path, server, tmp_path / "out")
        prompts = _prompts(server)
    paragraph, _ = prompts["What did they speak about?"]
    sentence, judge = prompts["Where did he meet the queen?"]
    assert "a short one-paragraph answer" in paragraph and "multiple-choice" not in paragraph
    assert "a short one-sentence answer" in sentence
    assert "conveys most of the information of the ground truth" in judge
    rows = {r["question_id"]: r for r in result.rows if r["benchmark"] == "narrativeqa"}
    assert rows["1"]["answer_type"] == "paragraph" and rows["2"]["answer_type"] == "sentence"
    assert rows["2"]["llm_correct"] == 1.0 and rows["2"]["token_f1"] == 1.0


def test_an_unknown_answer_type_is_refused_with_the_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    item = dict(TESTSET["narrativeqa"]["1"], answer_type="essay")
    path.write_text(json.dumps({"narrativeqa": {"1": item}}))
    with pytest.raises(BenchmarkError, match="answer_type 'essay' is not one of sentence, paragraph"):
        load_paper_testset(path)


def test_a_failing_server_leaves_the_benchmark_unfinished_and_the_rerun_completes_it(testset, tokenizer_path, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "llm.sqlite"
    fast = dict(max_attempts=1, backoff_base_s=0.0, outage_after=100)
    with LLMTestServer(responder=responder) as server:
        server.inject(Reply(status=503), times=1, match=lambda r: "Where did he meet the queen?" in r["messages"][-1]["content"])
        first = _evaluate(testset, tokenizer_path, server, out, cache, **fast)
        assert first.waiting == ["narrativeqa"] and not first.complete
        assert not (out / "benchmarks" / "narrativeqa" / "summary.json").exists()
        assert (out / "benchmarks" / "quality" / "summary.json").exists()
        sent = server.requests
        second = _evaluate(testset, tokenizer_path, server, out, cache, **fast)
        # only the failed answer and its verdict are sent again: the rest comes from the LLM cache
        assert server.requests - sent == 2
    assert second.complete and second.summary["resumed"] == ["quality"]
    rows = {r["question_id"]: r for r in second.rows}
    assert rows["2"]["llm_correct"] == 1.0
