"""End to end on the dev evalsets: run_evaluation writes predictions, per-question rows, tables,
plots and the resolved config; the LLM answer-and-judge protocol runs against the local test server
with scripted answers and verdicts."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from linkscan.evaluation.run import EvalConfig, run_evaluation
from linkscan.generators.llm.client import LLMClient
from linkscan.generators.llm.config import LLMConfig
from linkscan.pipeline.config import CorpusConfig
from linkscan.schemas import check_schema, table_to_records
from tests.eval_data import scripted_llm
from tests.llm_server import LLMTestServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(dev_evalsets: Path, tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory):
    config = EvalConfig(
        benchmarks=str(dev_evalsets),
        only=["paperqa_4k", "natural_question"],
        retrievers=["bm25", "random", "oracle"],
        max_questions=8,
        bootstrap_samples=200,
        corpus=CorpusConfig(tokenizer=str(tokenizer_path)),
    )
    out = tmp_path_factory.mktemp("eval")
    return run_evaluation(config, out)


def test_report_files_are_written(report) -> None:
    names = {p.name for p in report.out_dir.iterdir()}
    for stem in ("per_benchmark", "per_category", "per_length"):
        assert {f"{stem}.csv", f"{stem}.json", f"{stem}.md"} <= names
    assert {"report.md", "questions.csv", "questions.jsonl", "predictions.parquet", "config.json"} <= names
    assert report.plots == ["recall_at_k.png", "by_length_recall_at_50.png", "by_length_answer_containment.png"]
    for plot in report.plots:
        assert (report.out_dir / plot).read_bytes()[:8] == PNG_MAGIC


def test_oracle_recall_at_50_is_one_on_evidence_questions(report) -> None:
    oracle = [r for r in report.rows if r["retriever"] == "oracle"]
    assert {r["benchmark"] for r in oracle} == {"paperqa_4k"}  # natural_question has no gold evidence
    assert len(oracle) >= 6
    assert all(r["recall@50"] == 1.0 and r["mrr"] == 1.0 for r in oracle)


def test_bm25_beats_random_on_evidence(report) -> None:
    table = {(r["benchmark"], r["retriever"]): r for r in report.tables["per_benchmark"]}
    assert table[("paperqa_4k", "bm25")]["mrr"] > table[("paperqa_4k", "random")]["mrr"]
    assert table[("paperqa_4k", "bm25")]["recall@10"] > table[("paperqa_4k", "random")]["recall@10"]


def test_every_averaged_metric_has_a_confidence_interval(report) -> None:
    for row in report.tables["per_benchmark"]:
        if row["benchmark"] == "macro average":
            continue
        for metric in ("recall@10", "mrr", "answer_containment"):
            if row[f"{metric}_n"]:
                assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"]


def test_questions_without_evidence_get_answer_containment_only(report) -> None:
    rows = [r for r in report.rows if r["benchmark"] == "natural_question"]
    assert len(rows) == 16  # 8 questions x (bm25, random)
    assert all(r["recall@10"] is None and r["answer_containment"] in (0.0, 1.0) for r in rows)
    paperqa = [r for r in report.rows if r["benchmark"] == "paperqa_4k"]
    assert all(r["answer_containment"] is None for r in paperqa)  # multiple choice


def test_predictions_artifact_has_one_score_per_unit(report) -> None:
    table = pq.read_table(report.out_dir / "predictions.parquet")
    check_schema(table.schema, "predictions", "predictions.parquet")
    predictions = table_to_records("predictions", table)
    assert len(predictions) == len([r for r in report.rows if r["retriever"] != "random (expected)"])
    units = {(r["benchmark"], r["question_id"]): r["doc_units"] for r in report.rows}
    for prediction in predictions:
        n_units = units[(prediction.benchmark, prediction.question_id)]
        assert len(prediction.scores) == n_units
        assert len(prediction.top_k) == min(50, n_units)
        best = max(prediction.scores)
        assert prediction.scores[prediction.top_k[0]] == best


def test_config_and_evidence_mapping_are_stored_with_the_results(report) -> None:
    summary = json.loads((report.out_dir / "config.json").read_text())
    assert summary["config"]["retrievers"] == ["bm25", "random", "oracle"]
    assert summary["config"]["k"] == 50
    assert set(summary["code"]) == {"linkscan", "code_fingerprint", "git_commit"}
    mapping = summary["evidence_mapping"]["paperqa_4k"]
    assert mapping["questions_with_evidence"] == 8
    assert mapping["spans"] == mapping["matched"] + mapping["unmatched"] >= 8
    assert summary["evidence_mapping"]["natural_question"]["spans"] == 0


def test_markdown_report_lists_each_benchmark_and_the_macro_average(report) -> None:
    text = (report.out_dir / "report.md").read_text()
    n_gold = sum(1 for r in report.rows if r["benchmark"] == "paperqa_4k" and r["retriever"] == "bm25" and r["gold_units"])
    assert f"| paperqa_4k | bm25 | {n_gold} |" in text
    assert "| macro average | oracle |" in text
    assert "## Per document length (tokens)" in text


# -- the LLM protocol -----------------------------------------------------------------------------

def test_llm_protocol_end_to_end_with_scripted_answers_and_cache(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    with LLMTestServer(responder=scripted_llm) as server:
        llm = LLMConfig(base_url=server.url, model="test-model", api_key_env="")
        config = EvalConfig(
            benchmarks=str(dev_evalsets), only=["natural_question"], retrievers=["bm25"],
            k=5, max_questions=3, bootstrap_samples=100, corpus=CorpusConfig(tokenizer=str(tokenizer_path)), llm=llm,
        )
        rows = []
        for run in range(2):
            client = LLMClient(llm, cache_path=tmp_path / "llm.sqlite")
            try:
                result = run_evaluation(config, tmp_path / f"run{run}", llm_client=client)
            finally:
                client.close_cache()
            rows.append(result.rows)
            if run == 0:
                assert server.requests == 6  # 3 answers + 3 verdicts (one answer each)
        assert server.requests == 6  # the second run is served from the cache
    first = {r["question_id"]: r for r in rows[0]}
    assert [first[q]["llm_correct"] for q in ("natural_question-000-00", "natural_question-000-01", "natural_question-000-02")] == [1.0, 0.0, None]
    assert first["natural_question-000-00"]["token_f1"] == 1.0
    assert first["natural_question-000-01"]["token_f1"] == 0.0
    assert first["natural_question-000-00"]["llm_answer"] == "April 25, 2018"
    summary = json.loads((tmp_path / "run0" / "config.json").read_text())
    assert summary["skipped"] == {"judge_unparsed": 1}
    stages = summary["llm"]["usage"]["stages"]
    assert stages["eval_answer"]["requests"] == 3 and stages["eval_judge"]["requests"] == 3
    cached = json.loads((tmp_path / "run1" / "config.json").read_text())["llm"]["usage"]["total"]
    assert cached["requests"] == 0 and cached["cache_hits"] == 6
    assert [r["llm_correct"] for r in rows[1]] == [r["llm_correct"] for r in rows[0]]
    text = (tmp_path / "run0" / "per_benchmark.md").read_text()
    assert "llm_correct" in text and "token_f1" in text


def test_llm_protocol_multiple_choice_uses_the_same_option_judge(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    with LLMTestServer(responder=scripted_llm) as server:
        llm = LLMConfig(base_url=server.url, model="test-model", api_key_env="")
        config = EvalConfig(
            benchmarks=str(dev_evalsets), only=["paperqa_4k"], retrievers=["bm25"], k=5, max_questions=1,
            bootstrap_samples=100, corpus=CorpusConfig(tokenizer=str(tokenizer_path)), llm=llm,
        )
        client = LLMClient(llm, cache_path=None)
        result = run_evaluation(config, tmp_path, llm_client=client)
        prompts = [m["content"] for r in server.received for m in r["messages"]]
    [row] = result.rows
    assert row["llm_correct"] == 1.0 and row["token_f1"] is None
    assert "Options:\nA. Making V&L model pre-trained." in prompts[0]
    assert "same option(s) only" in prompts[1]
    assert "Ground truth: B: B. Supplementing image information." in prompts[1]
