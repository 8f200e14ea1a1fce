"""Benchmark loaders: the plain JSONL format of ``shared/evalsets`` and the paper's test-set file.

Plain format, two files per benchmark::

    <name>.documents.jsonl.gz   {"doc_id", "text"} per line (each document once; .jsonl also read)
    <name>.questions.jsonl      {"id", "doc_id", "question", "answers", "options", "evidence", "category"}

Paper format (``mambaretriever_test.json``): ``{benchmark: {id: {input_ids, full_text_sentences,
question, answer, answer_type, sentence_indices}}}`` as JSON, or the same as a pickle, which is read
through :class:`PlainUnpickler` (plain containers and scalars only: a pickle that names any class or
function is refused, because loading it could run arbitrary code). Its documents come already cut
into units (``full_text_sentences``); those units are kept as they are.

Any folder holding such files is a benchmark suite (:func:`load_suite`).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

# The multiple-choice benchmarks named in the paper's code (judged with the "same option" prompt).
PAPER_MCQ_BENCHMARKS = frozenset({
    "longbook_choice_eng", "meetingqa_4k", "meetingqa_16k", "paperqa_4k", "paperqa_16k", "tpo",
    "quality", "coursera", "muld_CAC",
})
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_QUESTIONS_SUFFIX = ".questions.jsonl"


class BenchmarkError(ValueError):
    """A benchmark file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Question:
    id: str
    doc_id: str
    question: str
    answers: tuple[str, ...]
    options: tuple[str, ...] | None = None  # "A. ...", "B. ..." for multiple choice
    evidence: tuple[str, ...] | None = None  # gold supporting spans from the document
    category: str = "unknown"
    answer_type: str = "sentence"  # the paper's "sentence" or "paragraph" (answer length asked for)

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    def answer_texts(self) -> tuple[str, ...]:
        """The gold answers as text: for multiple choice the option text, without the letters."""
        if self.is_multiple_choice:
            return tuple(self.answers[1:])
        return self.answers


@dataclass
class Benchmark:
    name: str
    source: str  # the file(s) it came from
    documents: dict[str, str]  # doc_id -> text
    questions: list[Question]
    # Documents that come already cut into retrieval units (paper format): doc_id -> units.
    units: dict[str, list[str]] = field(default_factory=dict)

    @property
    def has_evidence(self) -> bool:
        return any(q.evidence for q in self.questions)

    @property
    def is_multiple_choice(self) -> bool:
        return any(q.is_multiple_choice for q in self.questions)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise BenchmarkError(f"{path}:{line_no}: not valid JSON ({error.msg}); fix or remove the line") from None
                if not isinstance(row, dict):
                    raise BenchmarkError(f"{path}:{line_no}: expected a JSON object per line, got {type(row).__name__}")
                yield line_no, row
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot read ({error}); expected UTF-8 JSON lines (gzip for .gz)") from None


def _str_list(value: object, where: str, name: str, allow_none: bool) -> tuple[str, ...] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BenchmarkError(f"{where}: field {name!r} must be a list of strings{' or null' if allow_none else ''}, got {value!r:.80}")


def _documents_path(questions_path: Path) -> Path:
    stem = questions_path.name[: -len(_QUESTIONS_SUFFIX)]
    for suffix in (".documents.jsonl.gz", ".documents.jsonl"):
        candidate = questions_path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    raise BenchmarkError(
        f"{questions_path}: no {stem}.documents.jsonl.gz (or .jsonl) beside it; each plain benchmark needs both files"
    )


def load_plain_benchmark(questions_path: Path | str) -> Benchmark:
    """Load ``<name>.questions.jsonl`` and its ``<name>.documents.jsonl.gz``."""
    questions_path = Path(questions_path)
    if not questions_path.name.endswith(_QUESTIONS_SUFFIX):
        raise BenchmarkError(f"{questions_path}: a plain benchmark's questions file is named <name>{_QUESTIONS_SUFFIX}")
    name = questions_path.name[: -len(_QUESTIONS_SUFFIX)]
    documents_path = _documents_path(questions_path)
    documents: dict[str, str] = {}
    for line_no, row in _read_jsonl(documents_path):
        where = f"{documents_path}:{line_no}"
        doc_id, text = row.get("doc_id"), row.get("text")
        if not isinstance(doc_id, str) or not isinstance(text, str):
            raise BenchmarkError(f"{where}: each line needs string fields 'doc_id' and 'text'")
        if doc_id in documents:
            raise BenchmarkError(f"{where}: doc_id {doc_id!r} appears twice; each document must appear once")
        documents[doc_id] = text
    questions: list[Question] = []
    seen: set[str] = set()
    for line_no, row in _read_jsonl(questions_path):
        where = f"{questions_path}:{line_no}"
        missing = [key for key in ("id", "doc_id", "question", "answers") if key not in row]
        if missing:
            raise BenchmarkError(f"{where}: missing field(s) {', '.join(missing)}")
        qid, doc_id = str(row["id"]), row["doc_id"]
        if doc_id not in documents:
            raise BenchmarkError(f"{where}: doc_id {doc_id!r} is not in {documents_path.name}")
        if qid in seen:
            raise BenchmarkError(f"{where}: question id {qid!r} appears twice")
        seen.add(qid)
        questions.append(Question(
            id=qid,
            doc_id=doc_id,
            question=str(row["question"]),
            answers=_str_list(row["answers"], where, "answers", allow_none=False),
            options=_str_list(row.get("options"), where, "options", allow_none=True),
            evidence=_str_list(row.get("evidence"), where, "evidence", allow_none=True),
            category=str(row.get("category") or "unknown"),
            answer_type=str(row.get("answer_type") or "sentence"),
        ))
    if not questions:
        raise BenchmarkError(f"{questions_path}: holds no questions")
    return Benchmark(name=name, source=str(questions_path), documents=documents, questions=questions)


class PlainUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class or function reference is refused."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        raise BenchmarkError(
            f"{self.source}: the pickle refers to {module}.{name}; only plain containers and scalars are "
            "accepted (re-save the test set as JSON, or as a pickle of dicts, lists, strings and numbers)"
        )

    def persistent_load(self, pid: object) -> object:
        raise BenchmarkError(f"{self.source}: the pickle uses persistent ids; only plain data is accepted")


def load_plain_pickle(path: Path | str) -> object:
    """Read a pickle of plain data (dict, list, tuple, set, str, bytes, numbers, bool, None) safely."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return PlainUnpickler(handle, str(path)).load()
        except BenchmarkError:
            raise
        except Exception as error:  # a truncated or corrupt pickle
            raise BenchmarkError(f"{path}: not a readable pickle ({error})") from None


def _is_pickle(path: Path) -> bool:
    if path.suffix in _PICKLE_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"  # the PROTO opcode every pickle of protocol 2+ starts with


def _paper_doc_id(benchmark: str, units: list[str]) -> str:
    digest = hashlib.sha256("\x00".join(units).encode()).hexdigest()[:12]
    return f"{benchmark}-{digest}"


def load_paper_testset(path: Path | str) -> list[Benchmark]:
    """Load the paper's test-set file (JSON or plain pickle): one :class:`Benchmark` per top-level key.

    Each distinct ``full_text_sentences`` list becomes one document whose units are those sentences;
    several questions on the same document share it. ``input_ids``/``sentence_indices`` are not used:
    units are re-tokenized with exact offsets (the paper's stored alignment is heuristic).
    The paper's items carry no gold evidence, so only answer-based metrics apply to them.
    """
    path = Path(path)
    if _is_pickle(path):
        data = load_plain_pickle(path)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BenchmarkError(f"{path}: not valid UTF-8 JSON ({error}); expected the paper's test-set file") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BenchmarkError(f"{path}: expected {{benchmark: {{question_id: item}}}} (the paper's test-set layout)")
    benchmarks = []
    for name, items in data.items():
        documents: dict[str, str] = {}
        units: dict[str, list[str]] = {}
        questions: list[Question] = []
        for qid, item in items.items():
            where = f"{path}: {name}/{qid}"
            if not isinstance(item, dict):
                raise BenchmarkError(f"{where}: expected an object with question, answer, full_text_sentences")
            missing = [key for key in ("question", "answer", "full_text_sentences") if key not in item]
            if missing:
                raise BenchmarkError(f"{where}: missing field(s) {', '.join(missing)}")
            # Empty sentences hold no text (and no token to score); they are left out.
            sentences = [s for s in _str_list(item["full_text_sentences"], where, "full_text_sentences", allow_none=False) if s]
            if not sentences:
                raise BenchmarkError(f"{where}: full_text_sentences holds no text")
            # The paper's sentences carry no separating whitespace; add one so units concatenate to text.
            doc_units = [s if i == len(sentences) - 1 or s[-1:].isspace() else s + " " for i, s in enumerate(sentences)]
            doc_id = _paper_doc_id(str(name), doc_units)
            if doc_id not in units:
                units[doc_id] = doc_units
                documents[doc_id] = "".join(doc_units)
            questions.append(Question(
                id=str(qid),
                doc_id=doc_id,
                question=str(item["question"]),
                answers=_str_list(item["answer"], where, "answer", allow_none=False),
                category=str(item.get("category") or name),
                answer_type=str(item.get("answer_type") or "sentence"),
            ))
        if questions:
            benchmarks.append(Benchmark(name=str(name), source=str(path), documents=documents, questions=questions, units=units))
    return benchmarks


def is_multiple_choice_benchmark(benchmark: Benchmark) -> bool:
    """Plain benchmarks say so through their options; paper benchmarks through the paper's MCQ list."""
    return benchmark.is_multiple_choice or benchmark.name in PAPER_MCQ_BENCHMARKS


def load_suite(folder: Path | str, only: Iterable[str] | None = None) -> list[Benchmark]:
    """Every benchmark in a folder: plain ``*.questions.jsonl`` pairs and paper ``*.json``/``*.pkl`` files.

    ``only`` keeps the named benchmarks (an unknown name is an error that lists the available ones).
    Benchmarks come back sorted by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: not a folder; --benchmarks takes a folder of benchmark files")
    benchmarks: list[Benchmark] = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(_QUESTIONS_SUFFIX):
            benchmarks.append(load_plain_benchmark(path))
        elif path.is_file() and (path.suffix == ".json" or path.suffix in _PICKLE_SUFFIXES):
            benchmarks.extend(load_paper_testset(path))
    names = [b.name for b in benchmarks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchmarkError(f"{folder}: benchmark name(s) {', '.join(duplicates)} defined by more than one file")
    if not benchmarks:
        raise BenchmarkError(f"{folder}: no benchmarks (expected <name>{_QUESTIONS_SUFFIX} + documents, or a test-set .json/.pkl)")
    if only:
        wanted = list(dict.fromkeys(only))
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise BenchmarkError(f"{folder}: no benchmark named {', '.join(unknown)}; available: {', '.join(sorted(names))}")
        benchmarks = [b for b in benchmarks if b.name in wanted]
    return sorted(benchmarks, key=lambda b: b.name)
