"""Reports that cannot be misread (issue 13, item 6): hit@k beside recall@k, the n behind every
mean, which benchmarks each macro row averages, the oracle's context is its gold units only, the
random retriever's exact expectation beside its one draw, n on every by-length point, and a --k
outside the fixed cut-offs still gets its column and plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linkscan.evaluation.metrics import expected_random_metrics, hit_at_k, mrr, ndcg_at_k, recall_at_k
from linkscan.evaluation.report import plot_by_length
from linkscan.evaluation.retrievers import OracleRetriever, Query, RandomRetriever
from linkscan.evaluation.run import EvalConfig, run_evaluation
from linkscan.evaluation.units import DocumentUnits, units_from_texts
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.tokenize import load_tokenizer
from tests.eval_data import CONTRACT_UNITS


@pytest.fixture(scope="module")
def report(dev_evalsets: Path, tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory):
    config = EvalConfig(benchmarks=str(dev_evalsets), only=["legal_contract_qa", "natural_question"],
                        retrievers=["bm25", "random", "oracle"], k=30, max_questions=30, bootstrap_samples=100,
                        corpus=CorpusConfig(tokenizer=str(tokenizer_path)))
    return run_evaluation(config, tmp_path_factory.mktemp("eval"))


def _row(report, benchmark: str, retriever: str) -> dict:
    return next(r for r in report.tables["per_benchmark"] if r["benchmark"] == benchmark and r["retriever"] == retriever)


def test_hit_at_k_is_one_for_the_oracle_where_recall_at_1_cannot_be(report) -> None:
    oracle = _row(report, "legal_contract_qa", "oracle")
    gold = [r["gold_units"] for r in report.rows if r["retriever"] == "oracle"]
    assert np.mean(gold) > 1.5  # several gold units per question: recall@1 is capped at 1/|gold|
    assert oracle["recall@1"] == pytest.approx(np.mean([1 / g for g in gold]))
    assert oracle["hit@1"] == 1.0 and oracle["hit@30"] == 1.0
    text = (report.out_dir / "report.md").read_text()
    assert "hit@k: at least one gold unit in the top k" in text


def test_every_metric_group_shows_the_n_behind_its_means(report) -> None:
    rows = [r for r in report.rows if r["benchmark"] == "legal_contract_qa" and r["retriever"] == "bm25"]
    with_gold = sum(1 for r in rows if r["gold_units"])
    contained = sum(1 for r in rows if r["answer_containment"] is not None)
    bm25 = _row(report, "legal_contract_qa", "bm25")
    assert (bm25["recall@10_n"], bm25["mrr_n"], bm25["answer_containment_n"]) == (with_gold, with_gold, contained)
    text = (report.out_dir / "per_benchmark.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| benchmark |"))
    assert header.startswith("| benchmark | retriever | n (retrieval) | recall@1 |")
    assert "| n (answer_containment) | answer_containment |" in header and "| questions |" not in header
    line = next(line for line in text.splitlines() if line.startswith("| legal_contract_qa | bm25 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == str(with_gold) and cells[header.strip("|").split("|").index(" n (answer_containment) ")] == str(contained)


def test_macro_rows_say_which_benchmarks_they_average(report) -> None:
    oracle = _row(report, "macro average", "oracle")
    bm25 = _row(report, "macro average", "bm25")
    assert oracle["recall@10_benchmarks"] == ["legal_contract_qa"]
    assert bm25["answer_containment_benchmarks"] == ["legal_contract_qa", "natural_question"]
    assert oracle["answer_containment_benchmarks"] == ["legal_contract_qa"]
    text = (report.out_dir / "report.md").read_text()
    assert "- bm25: retrieval over legal_contract_qa; answer_containment over legal_contract_qa, natural_question" in text
    assert "- oracle: retrieval over legal_contract_qa; answer_containment over legal_contract_qa" in text
    assert "The retrievers are averaged over different benchmark sets" in text
    assert "| macro average | oracle | 1 benchmarks |" in text


def test_the_oracles_context_is_its_gold_units_only(report, tokenizer_path: Path) -> None:
    oracle = [r for r in report.rows if r["retriever"] == "oracle"]
    assert oracle and all(r["context_units"] == r["gold_units"] for r in oracle)
    document = units_from_texts("contract", CONTRACT_UNITS, load_tokenizer(str(tokenizer_path)))
    retriever = OracleRetriever()
    [scores] = retriever.score_document(document, [Query("q", "?", gold_units=(1, 4))])
    assert retriever.context_units(document, scores, k=5) == [1, 4]


def test_expected_random_metrics_match_many_seeded_draws() -> None:
    n_units, gold, draws = 40, (3, 17, 29), 4000
    expected = expected_random_metrics(n_units, len(gold), [1, 5, 10, 50], [10])
    document = DocumentUnits("d", [f"unit {i} " for i in range(n_units)], list(range(n_units)), list(range(n_units)))
    queries = [Query(f"q{i}", "?", gold) for i in range(draws)]
    rankings = [np.argsort(-s, kind="stable").tolist() for s in RandomRetriever(seed=7).score_document(document, queries)]
    observed = {
        **{f"recall@{k}": np.mean([recall_at_k(r, gold, k) for r in rankings]) for k in (1, 5, 10, 50)},
        **{f"hit@{k}": np.mean([hit_at_k(r, gold, k) for r in rankings]) for k in (1, 5, 10, 50)},
        "ndcg@10": np.mean([ndcg_at_k(r, gold, 10) for r in rankings]),
        "mrr": np.mean([mrr(r, gold) for r in rankings]),
    }
    for name, value in expected.items():
        assert observed[name] == pytest.approx(value, abs=0.02), name
    assert expected["recall@50"] == 1.0 and expected["hit@1"] == pytest.approx(3 / 40)


def test_the_random_expectation_is_reported_beside_the_draw(report) -> None:
    draw = _row(report, "legal_contract_qa", "random")
    exact = _row(report, "legal_contract_qa", "random (expected)")
    rows = [r for r in report.rows if r["retriever"] == "random" and r["benchmark"] == "legal_contract_qa" and r["gold_units"]]
    assert exact["recall@10_n"] == draw["recall@10_n"] == len(rows)
    assert exact["recall@10"] == pytest.approx(np.mean([min(10, r["doc_units"]) / r["doc_units"] for r in rows]))
    assert exact["answer_containment"] is None
    assert "random (expected): the exact expectation of a uniformly random ranking" in (report.out_dir / "report.md").read_text()


def test_by_length_points_show_their_n(report, tmp_path: Path) -> None:
    labels = plot_by_length(tmp_path / "plot.png", report.tables["per_length"], "answer_containment")
    expected = sorted(f"{r['retriever']} {r['length_bucket']} n={r['answer_containment_n']}"
                      for r in report.tables["per_length"] if r["answer_containment_n"])
    assert sorted(labels) == expected and len(expected) >= 2
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_a_k_outside_the_fixed_cut_offs_gets_its_column_and_plot(report) -> None:
    bm25 = _row(report, "legal_contract_qa", "bm25")
    assert 0 < bm25["recall@30"] <= 1 and 0 < bm25["hit@30"] <= 1
    assert bm25["recall@20"] <= bm25["recall@30"] <= bm25["recall@50"]
    assert "by_length_recall_at_30.png" in report.plots and (report.out_dir / "by_length_recall_at_30.png").is_file()
    assert json.loads((report.out_dir / "config.json").read_text())["config"]["k"] == 30
