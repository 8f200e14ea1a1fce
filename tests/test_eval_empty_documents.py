"""Empty and whitespace-only documents: the retrievers score them without an exception, and their
questions are skipped under a named reason, counted in config.json and the report (issue 13, item 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linkscan.evaluation.retrievers import Query, make_retriever
from linkscan.evaluation.run import EvalConfig, run_evaluation
from linkscan.evaluation.units import DocumentUnits
from linkscan.pipeline.config import CorpusConfig
from tests.eval_data import benchmark_with_empty_documents

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

TEXT_RETRIEVERS = ["bm25", "bm25-chunks", "dense", "dense-chunks"]


@pytest.mark.parametrize("name", TEXT_RETRIEVERS)
def test_a_document_without_units_gets_no_scores_instead_of_an_exception(name: str) -> None:
    empty = DocumentUnits("empty", [], [], [])
    [scores] = make_retriever(name).score_document(empty, [Query("q", "When does the lease end?")])
    assert scores.shape == (0,)


@pytest.mark.parametrize("name", ["bm25", "bm25-chunks"])
def test_units_without_a_word_score_zero_with_bm25(name: str) -> None:
    blank = DocumentUnits("blank", ["  \n", "the of and "], [0, 1, 2, 3], [1, 3])
    [scores] = make_retriever(name).score_document(blank, [Query("q", "When does the lease end?")])
    assert scores.tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def run(dev_evalsets: Path, tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory):
    suite = tmp_path_factory.mktemp("suite")
    ids = benchmark_with_empty_documents(dev_evalsets, suite)
    config = EvalConfig(benchmarks=str(suite), retrievers=TEXT_RETRIEVERS, bootstrap_samples=50,
                        corpus=CorpusConfig(tokenizer=str(tokenizer_path)))
    return ids, run_evaluation(config, tmp_path_factory.mktemp("out"))


def test_questions_on_empty_documents_are_skipped_and_the_others_evaluated(run) -> None:
    ids, result = run
    for retriever in TEXT_RETRIEVERS:
        evaluated = sorted(r["question_id"] for r in result.rows if r["retriever"] == retriever)
        assert evaluated == sorted(ids["real"]), retriever
    assert result.not_measured == {"withempty": {"empty_document": 2}}
    assert not result.complete


def test_empty_document_skips_are_counted_in_config_json(run) -> None:
    _, result = run
    summary = json.loads((result.out_dir / "config.json").read_text())
    assert summary["skipped"]["empty_document"] == 2
    assert summary["skipped_questions"]["withempty"]["empty_document"] == 2
    assert summary["evidence_mapping"]["withempty"]["empty_documents"] == ["empty", "blank"]


def test_empty_document_skips_are_named_in_the_report(run) -> None:
    _, result = run
    report = (result.out_dir / "report.md").read_text()
    assert "| withempty | empty_document | 2 | the document is empty or whitespace only: no metric at all |" in report


def test_the_real_documents_still_get_retrieval_metrics(run) -> None:
    _, result = run
    table = {r["retriever"]: r for r in result.tables["per_benchmark"] if r["benchmark"] == "withempty"}
    for retriever in TEXT_RETRIEVERS:
        assert table[retriever]["recall@50_n"] > 0
        assert 0.0 < table[retriever]["recall@50"] <= 1.0
    assert np.isfinite([table[r]["mrr"] for r in TEXT_RETRIEVERS]).all()
