"""A suite with broken benchmarks: each benchmark is loaded and validated on its own, a broken one is
skipped under a named reason, and the others are kept (issue 13, item 2)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from linkscan.evaluation.benchmarks import BenchmarkError, load_suite, read_paper_testset
from tests.eval_data import link_dev_benchmark, write_plain_benchmark

DOC = {"doc_id": "d1", "text": "The lease ends in March. The rent is paid monthly."}
QUESTION = {"id": "q1", "doc_id": "d1", "question": "When does the lease end?", "answers": ["March"]}


@pytest.fixture
def suite_folder(tmp_path: Path, dev_evalsets: Path) -> Path:
    """The good dev benchmark natural_question next to whatever a test adds."""
    link_dev_benchmark(dev_evalsets, tmp_path, "natural_question")
    return tmp_path


def _only_skip(folder: Path, **options) -> tuple[list[str], tuple[str, str, str]]:
    suite = load_suite(folder, **options)
    [skip] = suite.skipped
    return [b.name for b in suite.benchmarks], (skip.name, skip.reason, skip.detail)


def test_a_malformed_line_skips_only_its_benchmark(suite_folder: Path) -> None:
    path = write_plain_benchmark(suite_folder, "broken", [DOC], [QUESTION])
    path.write_text(path.read_text() + '{"id": "q2", "doc_id": "d1", "question": \n')
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("broken", "malformed_line")
    assert "broken.questions.jsonl:2: not valid JSON" in detail and "fix or remove the line" in detail


def test_a_question_on_a_missing_document_skips_its_benchmark(suite_folder: Path) -> None:
    write_plain_benchmark(suite_folder, "orphaned", [DOC], [QUESTION, {**QUESTION, "id": "q2", "doc_id": "d9"}])
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("orphaned", "unknown_doc_id")
    assert "orphaned.questions.jsonl:2: doc_id 'd9' is not in orphaned.documents.jsonl.gz" in detail


def test_a_missing_documents_file_skips_its_benchmark(suite_folder: Path) -> None:
    (suite_folder / "lonely.questions.jsonl").write_text(json.dumps(QUESTION) + "\n")
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("lonely", "missing_documents_file")
    assert "no lonely.documents.jsonl.gz (or .jsonl) beside it" in detail


def test_an_empty_questions_file_skips_its_benchmark(suite_folder: Path) -> None:
    write_plain_benchmark(suite_folder, "hollow", [DOC], [])
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("hollow", "no_questions")


def test_a_truncated_gzip_skips_its_benchmark(suite_folder: Path) -> None:
    write_plain_benchmark(suite_folder, "cut", [DOC] + [{"doc_id": f"d{i}", "text": "word " * 2000} for i in range(2, 6)], [QUESTION])
    documents = suite_folder / "cut.documents.jsonl.gz"
    documents.write_bytes(documents.read_bytes()[:-40])  # the end of the gzip stream is lost
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("cut", "unreadable_file")
    assert "cut.documents.jsonl.gz: cannot read" in detail


def test_an_unknown_only_name_is_skipped_and_the_known_one_kept(suite_folder: Path) -> None:
    kept, (name, reason, detail) = _only_skip(suite_folder, only=["natural_question", "typo"])
    assert kept == ["natural_question"]
    assert (name, reason) == ("typo", "unknown_benchmark")
    assert detail.endswith("available: natural_question")


def test_a_documents_file_without_questions_is_reported(suite_folder: Path) -> None:
    with gzip.open(suite_folder / "forgotten.documents.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(DOC) + "\n")
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("forgotten", "documents_without_questions")
    assert "no forgotten.questions.jsonl beside it" in detail


def test_a_name_defined_twice_is_skipped_not_guessed(suite_folder: Path) -> None:
    write_plain_benchmark(suite_folder, "twice", [DOC], [QUESTION])
    item = {"question": "?", "answer": ["a"], "full_text_sentences": ["Some text here."]}
    (suite_folder / "paper.json").write_text(json.dumps({"twice": {"0": item}}))
    kept, (name, reason, detail) = _only_skip(suite_folder)
    assert kept == ["natural_question"]
    assert (name, reason) == ("twice", "duplicate_benchmark_name")
    assert "twice.questions.jsonl" in detail and "paper.json" in detail


def test_a_bad_benchmark_inside_the_paper_file_skips_only_that_benchmark(tmp_path: Path) -> None:
    good = {"question": "Who?", "answer": ["Korvin"], "full_text_sentences": ["Korvin opened the door."]}
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"quality": {"0": good}, "narrativeqa": {"7": {"question": "Where?"}}}))
    benchmarks, [skip] = read_paper_testset(path)
    assert [b.name for b in benchmarks] == ["quality"]
    assert (skip.name, skip.reason) == ("narrativeqa", "bad_field")
    assert "narrativeqa/7: missing field(s) answer, full_text_sentences" in skip.detail


def test_a_folder_without_benchmark_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(BenchmarkError, match="no benchmarks"):
        load_suite(tmp_path)
