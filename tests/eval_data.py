"""Shared inputs of the evaluation tests: a short contract as retrieval units, a scripted LLM
(answers and verdicts) for the answer-and-judge protocol, and small benchmark suites written into
a test's folder (from the shared dev evalsets, linked or subset, never copied into the project)."""

import gzip
import json
import re
from pathlib import Path

from linkscan.evaluation.metrics import normalize_answer

CONTRACT_UNITS = [
    "The supplier shall deliver the goods within thirty days of the order. ",
    "Payment is due on receipt of the invoice, without any deduction. ",
    "This agreement is governed by the laws of the State of Delaware. ",
    "Either party may terminate the agreement with ninety days written notice. ",
    "The term of this agreement is five years from the effective date. ",
    "Invoices are sent electronically to the accounts payable department. ",
]


# -- the LLM protocol: scripted answers and verdicts -----------------------------------------

SCRIPTED_ANSWERS = {
    "when did season 2 of handmaid's tale start": "April 25, 2018",  # right
    "how many episodes in season 1 of handmades tale": "12",  # wrong
    "how many episodes of season two of the handmaids tale are there": "13",  # the judge mumbles
    "How to get additional knowledge for entities?": "B. Supplementing image information.",  # right option
}


def _field(text: str, name: str) -> str:
    return re.search(rf"^{name}: (.*)$", text, re.MULTILINE).group(1)


def scripted_llm(request: dict) -> str:
    text = request["messages"][-1]["content"]
    question = _field(text, "Question")
    if "Excerpts:" in text:
        return f"REASON: the excerpts say so.\nANSWER: {SCRIPTED_ANSWERS[question]}\n"
    if question.startswith("how many episodes of season two"):
        return "It is hard to say."
    truth, prediction = _field(text, "Ground truth"), _field(text, "Prediction")
    if "multiple-choice" in text:
        same = truth.split(":")[0] == prediction[:1]
    else:
        same = normalize_answer(truth) == normalize_answer(prediction)
    return f"The prediction {'matches' if same else 'differs'}.\nDECISION: {'YES' if same else 'NO'}"


# -- benchmark suites made in a test's folder -------------------------------------------------

def write_plain_benchmark(folder: Path, name: str, documents: list[dict], questions: list[dict]) -> Path:
    """``<name>.documents.jsonl.gz`` and ``<name>.questions.jsonl`` in ``folder``; the questions file's path."""
    with gzip.open(folder / f"{name}.documents.jsonl.gz", "wt", encoding="utf-8") as handle:
        for row in documents:
            handle.write(json.dumps(row) + "\n")
    path = folder / f"{name}.questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in questions), encoding="utf-8")
    return path


def link_dev_benchmark(dev_evalsets: Path, folder: Path, name: str, as_name: str | None = None) -> None:
    """A dev benchmark in ``folder`` through symbolic links (the shared files are never copied)."""
    as_name = as_name or name
    for suffix in (".documents.jsonl.gz", ".questions.jsonl"):
        (folder / f"{as_name}{suffix}").symlink_to(dev_evalsets / f"{name}{suffix}")


def read_dev_benchmark(dev_evalsets: Path, name: str) -> tuple[list[dict], list[dict]]:
    """The raw document and question rows of a dev benchmark."""
    with gzip.open(dev_evalsets / f"{name}.documents.jsonl.gz", "rt", encoding="utf-8") as handle:
        documents = [json.loads(line) for line in handle]
    with open(dev_evalsets / f"{name}.questions.jsonl", encoding="utf-8") as handle:
        questions = [json.loads(line) for line in handle]
    return documents, questions


def benchmark_with_empty_documents(dev_evalsets: Path, folder: Path, name: str = "withempty") -> dict[str, list[str]]:
    """Two real paperqa_4k documents with their questions, plus an empty and a whitespace-only
    document with one question each. Returns the question ids by kind (real, on_empty)."""
    documents, questions = read_dev_benchmark(dev_evalsets, "paperqa_4k")
    real = documents[:2]
    real_ids = {d["doc_id"] for d in real}
    real_questions = [q for q in questions if q["doc_id"] in real_ids]
    hollow = [{"doc_id": "empty", "text": ""}, {"doc_id": "blank", "text": "  \n\t \n "}]
    template = real_questions[0]
    on_empty = [{**template, "id": f"on-{d['doc_id']}", "doc_id": d["doc_id"]} for d in hollow]
    write_plain_benchmark(folder, name, real + hollow, real_questions + on_empty)
    return {"real": [q["id"] for q in real_questions], "on_empty": [q["id"] for q in on_empty]}
