"""Report tables: grouping, means, intervals, the macro average and length buckets."""
from __future__ import annotations

import json

import pytest

from linkscan.evaluation.report import aggregate, length_bucket, macro_average, metric_columns, write_tables

ROWS = [
    {"benchmark": "a", "category": "x", "retriever": "bm25", "length_bucket": "<8k", "recall@10": 1.0, "mrr": 1.0, "answer_containment": None},
    {"benchmark": "a", "category": "y", "retriever": "bm25", "length_bucket": "8k-16k", "recall@10": 0.0, "mrr": 0.5, "answer_containment": None},
    {"benchmark": "b", "category": "x", "retriever": "bm25", "length_bucket": "<8k", "recall@10": None, "mrr": None, "answer_containment": 1.0},
]


def test_length_bucket_boundaries() -> None:
    assert length_bucket(7_999) == "<8k"
    assert length_bucket(8_000) == "8k-16k"
    assert length_bucket(255_999) == "128k-256k"
    assert length_bucket(1_000_000) == ">=256k"


def test_metric_columns_in_family_order() -> None:
    assert metric_columns(ROWS) == ["recall@10", "mrr", "answer_containment"]


def test_aggregate_means_over_questions_where_the_metric_applies() -> None:
    table = aggregate(ROWS, ["benchmark", "retriever"], ["recall@10", "answer_containment"], samples=100)
    a, b = table
    assert (a["benchmark"], a["questions"], a["recall@10"], a["recall@10_n"]) == ("a", 2, 0.5, 2)
    assert a["recall@10_ci_low"] == 0.0 and a["recall@10_ci_high"] == 1.0
    assert a["answer_containment"] is None and a["answer_containment_n"] == 0
    assert b["recall@10"] is None and b["answer_containment"] == 1.0


def test_macro_average_is_the_unweighted_mean_of_benchmarks() -> None:
    rows = ROWS + [{**ROWS[2], "answer_containment": 0.0}, {**ROWS[2], "answer_containment": 0.0}]
    table = aggregate(rows, ["benchmark", "retriever"], ["answer_containment", "mrr"], samples=100)
    [macro] = macro_average(table, "benchmark", ["answer_containment", "mrr"])
    assert macro["answer_containment"] == pytest.approx(1 / 3)  # only benchmark b has it
    assert macro["mrr"] == pytest.approx(0.75)
    assert macro["questions"] == 5


def test_written_tables_are_strict_json(tmp_path) -> None:
    write_tables(tmp_path, ROWS, samples=100)
    for name in ("per_benchmark", "per_category", "per_length"):
        text = (tmp_path / f"{name}.json").read_text()
        json.loads(text, parse_constant=lambda constant: pytest.fail(f"{name}.json holds {constant}"))
    assert "| a | x | bm25 | 1 | 1.000 [1.000, 1.000] |" in (tmp_path / "per_category.md").read_text()
