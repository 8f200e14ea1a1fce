"""`linkscan evaluate` on a suite with one good benchmark, one with empty documents, one with a
malformed line and one multiple-choice set without evidence: it finishes, reports the good
benchmark's metrics, names each skip and its reason, and exits non-zero (issue 13, items 2 and 4)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from linkscan.flows.cli_evaluate import EXIT_INCOMPLETE
from tests.eval_data import benchmark_with_empty_documents, link_dev_benchmark, write_plain_benchmark

runner = CliRunner()


@pytest.fixture(scope="module")
def suite(dev_evalsets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("suite")
    link_dev_benchmark(dev_evalsets, folder, "paperqa_4k", "good")
    benchmark_with_empty_documents(dev_evalsets, folder, "withempty")
    broken = write_plain_benchmark(folder, "broken", [{"doc_id": "d1", "text": "The lease ends in March."}],
                                   [{"id": "q1", "doc_id": "d1", "question": "When?", "answers": ["March"]}])
    broken.write_text(broken.read_text() + "{this is not json\n")
    link_dev_benchmark(dev_evalsets, folder, "tpo")  # multiple choice, no gold evidence
    return folder


def _evaluate(suite: Path, out: Path, tokenizer_path: Path, *extra: str):
    return runner.invoke(app, ["evaluate", "--benchmarks", str(suite), "--retriever", "bm25", "--retriever", "oracle",
                               "--out", str(out), "--tokenizer", str(tokenizer_path), "--max-questions", "30",
                               "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def evaluated(suite: Path, tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    return out, _evaluate(suite, out, tokenizer_path)


def test_the_run_finishes_and_exits_non_zero(evaluated) -> None:
    out, result = evaluated
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "incomplete: some benchmarks or questions were not measured" in result.output
    assert (out / "report.md").is_file() and (out / "predictions.parquet").is_file()


def test_the_good_benchmarks_metrics_are_reported(evaluated) -> None:
    out, _ = evaluated
    table = {(r["benchmark"], r["retriever"]): r for r in json.loads((out / "per_benchmark.json").read_text())}
    assert table[("good", "oracle")]["recall@50"] == 1.0
    assert 0.0 < table[("good", "bm25")]["recall@50"] < 1.0
    assert table[("good", "bm25")]["recall@50_n"] >= 25  # of the first 30 questions, those with a gold unit
    assert {name for name, _ in table} == {"good", "withempty", "macro average"}


def test_each_skip_is_named_with_its_reason_on_the_console(evaluated) -> None:
    _, result = evaluated
    assert "skipped broken (malformed_line): " in result.output and "broken.questions.jsonl:2: not valid JSON" in result.output
    assert "skipped tpo (no_applicable_metric): tpo: multiple choice and no gold evidence" in result.output
    assert "not measured: withempty: 2 questions (empty_document)" in result.output


def test_each_skip_is_recorded_in_config_json_and_the_report(evaluated) -> None:
    out, _ = evaluated
    summary = json.loads((out / "config.json").read_text())
    assert [(s["benchmark"], s["reason"]) for s in summary["skipped_benchmarks"]] == [
        ("broken", "malformed_line"), ("tpo", "no_applicable_metric")]
    assert summary["skipped_questions"]["withempty"]["empty_document"] == 2
    report = (out / "report.md").read_text()
    assert "| broken | malformed_line |" in report and "| tpo | no_applicable_metric |" in report
    assert "| withempty | empty_document | 2 |" in report


def test_the_plan_and_the_work_estimate_come_before_any_work(evaluated) -> None:
    out, result = evaluated
    lines = result.output.splitlines()
    first_done = next(i for i, line in enumerate(lines) if line.endswith("so far)") and "questions done" in line)
    plan = next(i for i, line in enumerate(lines) if line.startswith("plan: 2 benchmark(s) to evaluate with bm25, oracle; 2 skipped"))
    work = next(i for i, line in enumerate(lines) if line.startswith("work: ~"))
    good = next(line for line in lines if line.startswith("  good: 30 questions"))
    assert plan < work < first_done
    assert good.endswith("retrieval metrics (30 questions with gold evidence)")
    # the estimate is close to what was done
    estimated = float(good.split("~")[1].split("k tokens")[0]) * 1000
    done = json.loads((out / "benchmarks" / "good" / "summary.json").read_text())["retrieval"]["bm25"]["tokens"]
    assert 0.7 * done < estimated < 1.3 * done


def test_include_unscored_evaluates_the_multiple_choice_set_anyway(suite: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(suite), "--only", "tpo", "--retriever", "bm25",
                                 "--out", str(tmp_path), "--tokenizer", str(tokenizer_path), "--max-questions", "3",
                                 "--include-unscored"])
    assert result.exit_code == 0, result.output
    assert "  tpo: 3 questions" in result.output and "no metric (--include-unscored)" in result.output
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["recall@10"] is None and r["answer_containment"] is None for r in rows)


def test_a_multiple_choice_set_alone_without_llm_is_nothing_to_evaluate(suite: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(suite), "--only", "tpo", "--retriever", "bm25",
                                 "--out", str(tmp_path / "out"), "--tokenizer", str(tokenizer_path)])
    assert result.exit_code == 2
    assert "error: " in result.output and "tpo (no_applicable_metric:" in result.output
    assert not (tmp_path / "out").exists()
