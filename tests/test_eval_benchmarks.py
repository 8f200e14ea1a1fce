"""Benchmark loaders: the plain dev evalsets, the paper's test-set file (JSON and plain pickle),
suites, and refusal of malformed or malicious input."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from linkscan.evaluation.benchmarks import (
    BenchmarkError,
    is_multiple_choice_benchmark,
    load_paper_testset,
    load_plain_benchmark,
    load_plain_pickle,
    load_suite,
)
from tests.eval_data import write_plain_benchmark


def test_plain_benchmark_loads_questions_and_documents(dev_evalsets: Path) -> None:
    benchmark = load_plain_benchmark(dev_evalsets / "paperqa_4k.questions.jsonl")
    assert benchmark.name == "paperqa_4k"
    assert len(benchmark.questions) == 94
    assert len(benchmark.documents) == 25
    first = benchmark.questions[0]
    assert first.id == "paperqa_4k-000"
    assert first.answers == ("B", "Supplementing image information.")
    assert first.options[1] == "B. Supplementing image information."
    assert first.evidence[0].startswith("Our evaluation of the table generation")
    assert first.category == "academic"
    assert first.doc_id in benchmark.documents


def test_multiple_choice_answer_texts_drop_the_letters(dev_evalsets: Path) -> None:
    question = load_plain_benchmark(dev_evalsets / "tpo.questions.jsonl").questions[0]
    assert question.is_multiple_choice
    assert question.answer_texts() == ("to study human form and movement",)


def test_open_question_has_no_options_and_keeps_all_answers(dev_evalsets: Path) -> None:
    question = load_plain_benchmark(dev_evalsets / "natural_question.questions.jsonl").questions[0]
    assert not question.is_multiple_choice
    assert question.answer_texts() == ("April 25 , 2018",)
    assert question.evidence is None


def test_suite_holds_every_dev_benchmark_sorted(dev_evalsets: Path) -> None:
    suite = load_suite(dev_evalsets)
    assert suite.skipped == []
    names = [b.name for b in suite.benchmarks]
    assert names == [
        "coursera", "legal_contract_qa", "longbench_v2_long_dialogue", "loogle_shortdep_qa_sample",
        "natural_question", "paperqa_4k", "quality", "tpo",
    ]


def test_suite_only_keeps_named_benchmarks(dev_evalsets: Path) -> None:
    suite = load_suite(dev_evalsets, only=["tpo", "paperqa_4k"])
    assert [b.name for b in suite.benchmarks] == ["paperqa_4k", "tpo"]
    assert [b.has_evidence for b in suite.benchmarks] == [True, False]


def test_suite_skips_an_unknown_benchmark_name_and_keeps_the_known_one(dev_evalsets: Path) -> None:
    suite = load_suite(dev_evalsets, only=["tpo", "nope"])
    assert [b.name for b in suite.benchmarks] == ["tpo"]
    [skip] = suite.skipped
    assert (skip.name, skip.reason) == ("nope", "unknown_benchmark")
    assert "--only nope: no benchmark named nope in" in skip.detail and "available: coursera, legal_contract_qa" in skip.detail


def test_question_on_a_missing_document_names_file_and_line(tmp_path: Path) -> None:
    path = write_plain_benchmark(
        tmp_path, "tiny", [{"doc_id": "d1", "text": "Some text."}],
        [{"id": "q1", "doc_id": "d1", "question": "?", "answers": ["a"]},
         {"id": "q2", "doc_id": "d9", "question": "?", "answers": ["a"]}],
    )
    with pytest.raises(BenchmarkError, match=r"tiny.questions.jsonl:2: doc_id 'd9' is not in tiny.documents.jsonl.gz"):
        load_plain_benchmark(path)


def test_questions_file_without_documents_file_says_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "lonely.questions.jsonl"
    path.write_text('{"id": "q", "doc_id": "d", "question": "?", "answers": ["a"]}\n')
    with pytest.raises(BenchmarkError, match="no lonely.documents.jsonl.gz"):
        load_plain_benchmark(path)


def test_broken_json_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = write_plain_benchmark(tmp_path, "bad", [{"doc_id": "d1", "text": "x"}], [])
    path.write_text('{"id": "q1", "doc_id": "d1", "question": "?", "answers": ["a"]}\n{not json\n')
    with pytest.raises(BenchmarkError, match=r"bad.questions.jsonl:2: not valid JSON"):
        load_plain_benchmark(path)


PAPER_TESTSET = {
    "quality": {
        "0": {
            "question": "Who opened the door?",
            "answer": ["Korvin"],
            "answer_type": "sentence",
            "full_text_sentences": ["Korvin opened the door.", "The guards slept."],
            "input_ids": [1, 2, 3],
            "sentence_indices": [1, 2],
        },
        "1": {
            "question": "Who slept?",
            "answer": ["the guards"],
            "answer_type": "paragraph",
            "full_text_sentences": ["Korvin opened the door.", "The guards slept."],
            "input_ids": [1, 2, 3],
            "sentence_indices": [1, 2],
        },
    },
    "narrativeqa": {
        "7": {
            "question": "Where?",
            "answer": ["Paris", "in Paris"],
            "answer_type": "sentence",
            "full_text_sentences": ["They met in Paris. ", "It rained."],
        },
    },
}


def test_paper_testset_json_gives_one_benchmark_per_key(tmp_path: Path) -> None:
    path = tmp_path / "mambaretriever_test.json"
    path.write_text(json.dumps(PAPER_TESTSET))
    benchmarks = {b.name: b for b in load_paper_testset(path)}
    assert sorted(benchmarks) == ["narrativeqa", "quality"]
    quality = benchmarks["quality"]
    assert [q.id for q in quality.questions] == ["0", "1"]
    # both questions are on the same document, stored once
    assert len(quality.documents) == 1
    assert quality.questions[0].doc_id == quality.questions[1].doc_id
    # units concatenate back to the document text; a separating space is added where missing
    units = quality.units[quality.questions[0].doc_id]
    assert units == ["Korvin opened the door. ", "The guards slept."]
    assert quality.documents[quality.questions[0].doc_id] == "Korvin opened the door. The guards slept."
    assert quality.questions[1].answer_type == "paragraph"
    assert benchmarks["narrativeqa"].questions[0].answers == ("Paris", "in Paris")
    assert is_multiple_choice_benchmark(quality) and not is_multiple_choice_benchmark(benchmarks["narrativeqa"])


def test_paper_testset_plain_pickle_loads_like_json(tmp_path: Path) -> None:
    json_path, pickle_path = tmp_path / "t.json", tmp_path / "t.pkl"
    json_path.write_text(json.dumps(PAPER_TESTSET))
    pickle_path.write_bytes(pickle.dumps(PAPER_TESTSET, protocol=4))
    from_json = load_paper_testset(json_path)
    from_pickle = load_paper_testset(pickle_path)
    assert [(b.name, b.questions, b.units) for b in from_pickle] == [(b.name, b.questions, b.units) for b in from_json]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/linkscan-pwned",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = Path("/tmp/linkscan-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"quality": {"0": _Exploit()}}))
    with pytest.raises(BenchmarkError, match=r"evil.pkl: the pickle refers to (posix|os)\.system; only plain containers"):
        load_paper_testset(path)
    assert not marker.exists()


def test_pickle_of_a_non_plain_class_is_refused(tmp_path: Path) -> None:
    from collections import OrderedDict

    path = tmp_path / "ordered.pickle"
    path.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(BenchmarkError, match="refers to collections.OrderedDict"):
        load_plain_pickle(path)


def test_pickle_without_suffix_is_still_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "testset.json"  # misnamed: the bytes are a pickle
    path.write_bytes(pickle.dumps({"quality": {"0": _Exploit()}}))
    with pytest.raises(BenchmarkError, match="only plain containers and scalars"):
        load_paper_testset(path)


def test_paper_item_without_sentences_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"quality": {"5": {"question": "?", "answer": ["a"]}}}))
    with pytest.raises(BenchmarkError, match=r"quality/5: missing field\(s\) full_text_sentences"):
        load_paper_testset(path)


def test_suite_mixes_plain_and_paper_files(tmp_path: Path) -> None:
    write_plain_benchmark(tmp_path, "tiny", [{"doc_id": "d1", "text": "Some text."}],
                 [{"id": "q1", "doc_id": "d1", "question": "?", "answers": ["a"]}])
    (tmp_path / "paper.json").write_text(json.dumps(PAPER_TESTSET))
    assert [b.name for b in load_suite(tmp_path).benchmarks] == ["narrativeqa", "quality", "tiny"]
