"""`linkscan evaluate` and `linkscan retrieve` through the typer app."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from linkscan.flows.cli import app

runner = CliRunner()


def test_evaluate_writes_the_report_to_out(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, [
        "evaluate", "--benchmarks", str(dev_evalsets), "--only", "paperqa_4k", "--retriever", "bm25",
        "--retriever", "oracle", "--k", "20", "--max-questions", "4", "--out", str(out),
        "--tokenizer", str(tokenizer_path),
    ])
    assert result.exit_code == 0, result.output
    assert "| paperqa_4k | oracle | 4 | 1.000 |" in result.output  # n (retrieval), then recall@10
    assert f"report: {out / 'report.md'}" in result.output
    summary = json.loads((out / "config.json").read_text())
    assert summary["config"]["retrievers"] == ["bm25", "oracle"]
    assert summary["config"]["k"] == 20 and summary["config"]["only"] == ["paperqa_4k"]
    assert (out / "recall_at_k.png").is_file()


def test_evaluate_defaults_to_data_evals_run_id(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "evaluate", "--benchmarks", str(dev_evalsets), "--only", "natural_question", "--retriever", "random",
        "--max-questions", "2", "--data", str(tmp_path), "--tokenizer", str(tokenizer_path),
    ])
    assert result.exit_code == 0, result.output
    [run] = list((tmp_path / "evals").iterdir())
    assert (run / "report.md").is_file()
    assert json.loads((run / "config.json").read_text())["run_id"] == run.name


def test_evaluate_with_only_unknown_benchmarks_is_a_clear_error(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(dev_evalsets), "--only", "squad", "--out", str(out),
                                 "--tokenizer", str(tokenizer_path)])
    assert result.exit_code == 2
    assert "nothing to evaluate, every benchmark was skipped: squad (unknown_benchmark: --only squad: no benchmark named squad" in result.output
    assert "available: coursera, legal_contract_qa" in result.output
    assert not out.exists()


def test_evaluate_unknown_retriever_is_a_clear_error(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "evaluate", "--benchmarks", str(dev_evalsets), "--only", "tpo", "--retriever", "bm99",
        "--out", str(tmp_path), "--tokenizer", str(tokenizer_path),
    ])
    assert result.exit_code == 2
    assert "unknown retriever 'bm99'" in result.output


def test_evaluate_llm_url_needs_a_model(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(dev_evalsets), "--llm-base-url", "http://127.0.0.1:9/v1",
                                 "--tokenizer", str(tokenizer_path)])
    assert result.exit_code == 2
    assert "--llm-base-url and --llm-model go together" in result.output


def test_retrieve_prints_the_top_units_best_first(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    with gzip.open(dev_evalsets / "paperqa_4k.documents.jsonl.gz", "rt", encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    document = tmp_path / "paper.txt"
    document.write_text(first["text"], encoding="utf-8")
    result = runner.invoke(app, [
        "retrieve", "--retriever", "bm25", "--document", str(document), "--k", "3",
        "--question", "How to get additional knowledge for entities?", "--tokenizer", str(tokenizer_path),
    ])
    assert result.exit_code == 0, result.output
    assert "bm25: top 3 of" in result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith(("│ 1 ", "│ 2 ", "│ 3 "))]
    assert len(lines) == 3
    scores = [float(line.split("│")[3]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    # the gold evidence of this paper's question ranks first
    assert "additional knowledge for entities was acquired by supplementing image" in lines[0]


def test_evaluate_runs_the_llm_protocol_with_the_shared_cache(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    from tests.llm_server import LLMTestServer
    from tests.eval_data import scripted_llm

    with LLMTestServer(responder=scripted_llm) as server:
        result = runner.invoke(app, [
            "evaluate", "--benchmarks", str(dev_evalsets), "--only", "natural_question", "--max-questions", "1",
            "--retriever", "bm25", "--k", "5", "--data", str(tmp_path), "--out", str(tmp_path / "report"),
            "--tokenizer", str(tokenizer_path), "--llm-base-url", server.url, "--llm-model", "test-model",
            "--llm-api-key-env", "",
        ])
        assert result.exit_code == 0, result.output
        assert server.requests == 2  # one answer, one verdict
    assert (tmp_path / "cache" / "llm.sqlite").is_file()
    assert "| n (llm_correct) | llm_correct |" in result.output
    assert "| natural_question | bm25 | 0 | " in result.output and "| 1 | 1.000 | 1 | 1.000 |" in result.output
    [row] = [json.loads(line) for line in (tmp_path / "report" / "questions.jsonl").read_text().splitlines()]
    assert row["llm_correct"] == 1.0 and row["llm_answer"] == "April 25, 2018"


def test_evaluate_settings_come_from_a_file_with_options_and_set_on_top(dev_evalsets: Path, tokenizer_path: Path,
                                                                          tmp_path: Path) -> None:
    settings = tmp_path / "eval.yaml"
    settings.write_text(f"retrievers: [random]\nmax_questions: 2\nbootstrap_samples: 50\nseed: 5\n"
                        f"corpus: {{tokenizer: {json.dumps(str(tokenizer_path))}}}\n")
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(dev_evalsets), "--only", "natural_question",
                                 "--config", str(settings), "--seed", "7", "--set", "bootstrap_samples=20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["retrievers"], config["max_questions"], config["seed"], config["bootstrap_samples"]) == (["random"], 2, 7, 20)
    assert config["corpus"]["tokenizer"] == str(tokenizer_path)
    bad = runner.invoke(app, ["evaluate", "--benchmarks", str(dev_evalsets), "--set", "k=zero", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "k: Input should be a valid integer" in bad.output
