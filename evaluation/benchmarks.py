"""Benchmark loaders: the plain JSONL format of ``shared/evalsets`` and the paper's test-set file.

Plain format, two files per benchmark::

    <name>.documents.jsonl.gz   {"doc_id", "text"} per line (each document once; .jsonl also read)
    <name>.questions.jsonl      {"id", "doc_id", "question", "answers", "options", "evidence", "category"}

Paper format (``mambaretriever_test.json``): ``{benchmark: {id: {input_ids, full_text_sentences,
question, answer, answer_type, sentence_indices}}}`` as JSON, or the same as a pickle, which is read
through :class:`PlainUnpickler` (plain containers and scalars only: a pickle that names any class or
function is refused, because loading it could run arbitrary code). Its documents come already cut
into units (``full_text_sentences``); those units are kept as they are.

Any folder holding such files is a benchmark suite (:func:`load_suite`). Each benchmark in it is
loaded and validated on its own: a broken one is skipped under a named reason (``SkippedBenchmark``)
and the others are kept.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import zlib
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
_DOCUMENTS_SUFFIXES = (".documents.jsonl.gz", ".documents.jsonl")
# The paper's answer types: how long an answer the reader is asked for.
ANSWER_TYPES = ("sentence", "paragraph")


class BenchmarkError(ValueError):
    """A benchmark file is missing or malformed; the message names the file and the fix, and
    ``reason`` is the short name the benchmark is counted under when it is skipped."""

    def __init__(self, message: str, reason: str = "invalid_benchmark") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SkippedBenchmark:
    """A benchmark that was not evaluated: ``reason`` is a short name, ``detail`` names the file
    (or option) and the fix."""

    name: str
    reason: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"benchmark": self.name, "reason": self.reason, "detail": self.detail}


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
    # Multiple choice without an options list: the paper's MCQ benchmarks keep the options in the
    # question text, so the benchmark's name says so (PAPER_MCQ_BENCHMARKS).
    multiple_choice: bool = False

    @property
    def is_multiple_choice(self) -> bool:
        return self.multiple_choice or bool(self.options)

    def answer_texts(self) -> tuple[str, ...]:
        """The gold answers as text: with an options list, the option text without the letters."""
        if self.options:
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
    files: tuple[str, ...] = ()  # every file it was read from (the input fingerprint of a resumed run)

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
                    raise BenchmarkError(f"{path}:{line_no}: not valid JSON ({error.msg}); fix or remove the line",
                                         "malformed_line") from None
                if not isinstance(row, dict):
                    raise BenchmarkError(f"{path}:{line_no}: expected a JSON object per line, got {type(row).__name__}",
                                         "malformed_line")
                yield line_no, row
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:  # a truncated .gz ends in EOFError
        raise BenchmarkError(f"{path}: cannot read ({error}); expected UTF-8 JSON lines (gzip for .gz, complete)",
                             "unreadable_file") from None


def _str_list(value: object, where: str, name: str, allow_none: bool) -> tuple[str, ...] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BenchmarkError(f"{where}: field {name!r} must be a list of strings{' or null' if allow_none else ''}, got {value!r:.80}",
                         "bad_field")


def _answer_type(value: object, where: str) -> str:
    answer_type = str(value or "sentence")
    if answer_type not in ANSWER_TYPES:
        raise BenchmarkError(f"{where}: answer_type {answer_type!r} is not one of {', '.join(ANSWER_TYPES)}", "bad_field")
    return answer_type


def _documents_path(questions_path: Path) -> Path:
    stem = questions_path.name[: -len(_QUESTIONS_SUFFIX)]
    for suffix in _DOCUMENTS_SUFFIXES:
        candidate = questions_path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    raise BenchmarkError(
        f"{questions_path}: no {stem}.documents.jsonl.gz (or .jsonl) beside it; each plain benchmark needs both files",
        "missing_documents_file",
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
            raise BenchmarkError(f"{where}: each line needs string fields 'doc_id' and 'text'", "bad_field")
        if doc_id in documents:
            raise BenchmarkError(f"{where}: doc_id {doc_id!r} appears twice; each document must appear once", "duplicate_id")
        documents[doc_id] = text
    questions: list[Question] = []
    seen: set[str] = set()
    for line_no, row in _read_jsonl(questions_path):
        where = f"{questions_path}:{line_no}"
        missing = [key for key in ("id", "doc_id", "question", "answers") if key not in row]
        if missing:
            raise BenchmarkError(f"{where}: missing field(s) {', '.join(missing)}", "bad_field")
        qid, doc_id = str(row["id"]), row["doc_id"]
        if doc_id not in documents:
            raise BenchmarkError(f"{where}: doc_id {doc_id!r} is not in {documents_path.name}; add the document or "
                                 "remove the question", "unknown_doc_id")
        if qid in seen:
            raise BenchmarkError(f"{where}: question id {qid!r} appears twice", "duplicate_id")
        seen.add(qid)
        questions.append(Question(
            id=qid,
            doc_id=doc_id,
            question=str(row["question"]),
            answers=_str_list(row["answers"], where, "answers", allow_none=False),
            options=_str_list(row.get("options"), where, "options", allow_none=True),
            evidence=_str_list(row.get("evidence"), where, "evidence", allow_none=True),
            category=str(row.get("category") or "unknown"),
            answer_type=_answer_type(row.get("answer_type"), where),
        ))
    if not questions:
        raise BenchmarkError(f"{questions_path}: holds no questions; add questions or remove the benchmark's files",
                             "no_questions")
    return Benchmark(name=name, source=str(questions_path), documents=documents, questions=questions,
                     files=(str(questions_path), str(documents_path)))


class PlainUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class or function reference is refused."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        raise BenchmarkError(
            f"{self.source}: the pickle refers to {module}.{name}; only plain containers and scalars are "
            "accepted (re-save the test set as JSON, or as a pickle of dicts, lists, strings and numbers)",
            "unsafe_pickle",
        )

    def persistent_load(self, pid: object) -> object:
        raise BenchmarkError(f"{self.source}: the pickle uses persistent ids; only plain data is accepted", "unsafe_pickle")


def load_plain_pickle(path: Path | str) -> object:
    """Read a pickle of plain data (dict, list, tuple, set, str, bytes, numbers, bool, None) safely."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return PlainUnpickler(handle, str(path)).load()
        except BenchmarkError:
            raise
        except Exception as error:  # a truncated or corrupt pickle
            raise BenchmarkError(f"{path}: not a readable pickle ({error})", "unreadable_file") from None


def _is_pickle(path: Path) -> bool:
    if path.suffix in _PICKLE_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"  # the PROTO opcode every pickle of protocol 2+ starts with


def _paper_doc_id(benchmark: str, units: list[str]) -> str:
    digest = hashlib.sha256("\x00".join(units).encode()).hexdigest()[:12]
    return f"{benchmark}-{digest}"


def _read_paper_file(path: Path) -> dict:
    if _is_pickle(path):
        data = load_plain_pickle(path)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BenchmarkError(f"{path}: not valid UTF-8 JSON ({error}); expected the paper's test-set file",
                                 "unreadable_file") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BenchmarkError(f"{path}: expected {{benchmark: {{question_id: item}}}} (the paper's test-set layout)",
                             "malformed_file")
    return data


def _paper_benchmark(path: Path, name: str, items: dict) -> Benchmark:
    """One benchmark of the paper's test set (raises BenchmarkError naming the first bad item)."""
    documents: dict[str, str] = {}
    units: dict[str, list[str]] = {}
    questions: list[Question] = []
    for qid, item in items.items():
        where = f"{path}: {name}/{qid}"
        if not isinstance(item, dict):
            raise BenchmarkError(f"{where}: expected an object with question, answer, full_text_sentences", "malformed_line")
        missing = [key for key in ("question", "answer", "full_text_sentences") if key not in item]
        if missing:
            raise BenchmarkError(f"{where}: missing field(s) {', '.join(missing)}", "bad_field")
        # Empty sentences hold no text (and no token to score); they are left out. A document left with
        # none is kept: its questions are skipped when evaluated, and counted (empty_document).
        sentences = [s for s in _str_list(item["full_text_sentences"], where, "full_text_sentences", allow_none=False) if s]
        # The paper's sentences carry no separating whitespace; add one so units concatenate to text.
        doc_units = [s if i == len(sentences) - 1 or s[-1:].isspace() else s + " " for i, s in enumerate(sentences)]
        doc_id = _paper_doc_id(name, doc_units)
        if doc_id not in units:
            units[doc_id] = doc_units
            documents[doc_id] = "".join(doc_units)
        questions.append(Question(
            id=str(qid),
            doc_id=doc_id,
            question=str(item["question"]),
            answers=_str_list(item["answer"], where, "answer", allow_none=False),
            category=str(item.get("category") or name),
            answer_type=_answer_type(item.get("answer_type"), where),
            multiple_choice=name in PAPER_MCQ_BENCHMARKS,
        ))
    if not questions:
        raise BenchmarkError(f"{path}: {name} holds no questions", "no_questions")
    return Benchmark(name=name, source=str(path), documents=documents, questions=questions, units=units, files=(str(path),))


def read_paper_testset(path: Path | str) -> tuple[list[Benchmark], list[SkippedBenchmark]]:
    """The paper's test-set file, each benchmark validated on its own: the good ones, and the
    skipped ones with their reason. A file that cannot be read at all raises BenchmarkError."""
    path = Path(path)
    benchmarks, skipped = [], []
    for name, items in _read_paper_file(path).items():
        try:
            benchmarks.append(_paper_benchmark(path, str(name), items))
        except BenchmarkError as error:
            skipped.append(SkippedBenchmark(str(name), error.reason, str(error)))
    return benchmarks, skipped


def load_paper_testset(path: Path | str) -> list[Benchmark]:
    """Load the paper's test-set file (JSON or plain pickle): one :class:`Benchmark` per top-level key.

    Each distinct ``full_text_sentences`` list becomes one document whose units are those sentences;
    several questions on the same document share it. ``input_ids``/``sentence_indices`` are not used:
    units are re-tokenized with exact offsets (the paper's stored alignment is heuristic).
    The paper's items carry no gold evidence, so only answer-based metrics apply to them.
    Strict: the first bad benchmark raises (``read_paper_testset`` skips it instead).
    """
    benchmarks, skipped = read_paper_testset(path)
    if skipped:
        raise BenchmarkError(skipped[0].detail, skipped[0].reason)
    return benchmarks


def is_multiple_choice_benchmark(benchmark: Benchmark) -> bool:
    """Plain benchmarks say so through their options; paper benchmarks through the paper's MCQ list."""
    return benchmark.is_multiple_choice or benchmark.name in PAPER_MCQ_BENCHMARKS


@dataclass
class Suite:
    """The benchmarks of a folder that loaded, and those that were skipped (with their reasons)."""

    folder: Path
    benchmarks: list[Benchmark]
    skipped: list[SkippedBenchmark]


def _plain_name(path: Path) -> str | None:
    """The benchmark name of a plain questions or documents file, else None."""
    for suffix in (_QUESTIONS_SUFFIX, *_DOCUMENTS_SUFFIXES):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def load_suite(folder: Path | str, only: Iterable[str] | None = None) -> Suite:
    """Every benchmark in a folder: plain ``*.questions.jsonl`` pairs and paper ``*.json``/``*.pkl`` files.

    Each benchmark is loaded and validated on its own; a broken one (unreadable or malformed file,
    a question on a missing document, no questions, no documents file), a documents file without
    its questions file, a name defined twice, and a name in ``only`` that is not in the folder are
    skipped, each with its reason. Raises BenchmarkError only when the folder holds no benchmark
    file at all. Benchmarks and skips come back sorted by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: not a folder; --benchmarks takes a folder of benchmark files", "not_a_folder")
    wanted = list(dict.fromkeys(only)) if only else None
    files = sorted(path for path in folder.iterdir() if path.is_file())
    questions_files = {_plain_name(p): p for p in files if p.name.endswith(_QUESTIONS_SUFFIX) and _plain_name(p)}
    documents_files = {_plain_name(p): p for p in files if p.name.endswith(_DOCUMENTS_SUFFIXES) and _plain_name(p)}
    paper_files = [p for p in files if p.suffix == ".json" or p.suffix in _PICKLE_SUFFIXES]
    if not questions_files and not documents_files and not paper_files:
        raise BenchmarkError(f"{folder}: no benchmarks (expected <name>{_QUESTIONS_SUFFIX} + documents, or a test-set .json/.pkl)",
                             "no_benchmarks")

    sources: dict[str, list[str]] = {name: [str(path)] for name, path in questions_files.items()}
    paper: dict[str, Benchmark] = {}
    skipped: list[SkippedBenchmark] = []
    unreadable: list[str] = []
    for path in paper_files:
        try:
            loaded, bad = read_paper_testset(path)
        except BenchmarkError as error:
            unreadable.append(path.name)
            if wanted is None:
                skipped.append(SkippedBenchmark(path.name, error.reason, str(error)))
            continue
        for item in [*loaded, *bad]:
            sources.setdefault(item.name, []).append(str(path))
        paper.update((b.name, b) for b in loaded)
        skipped.extend(bad)
    for name, path in documents_files.items():
        if name not in questions_files:
            skipped.append(SkippedBenchmark(name, "documents_without_questions", (
                f"{path}: no {name}{_QUESTIONS_SUFFIX} beside it, so it is not evaluated; add the questions file "
                "or move the documents file out of the folder")))

    duplicates = {name for name, where in sources.items() if len(where) > 1}
    skipped = [s for s in skipped if s.name not in duplicates]
    skipped.extend(SkippedBenchmark(name, "duplicate_benchmark_name", (
        f"{name} is defined by {' and '.join(sources[name])}; rename one of them")) for name in sorted(duplicates))

    names = sorted(set(sources) | {s.name for s in skipped})
    if wanted is not None:
        unknown = [n for n in wanted if n not in names]
        not_searched = f" (not searched, unreadable: {', '.join(unreadable)})" if unreadable else ""
        skipped = [s for s in skipped if s.name in wanted]
        skipped.extend(SkippedBenchmark(name, "unknown_benchmark", (
            f"--only {name}: no benchmark named {name} in {folder}; available: {', '.join(names)}{not_searched}"))
            for name in unknown)

    benchmarks = [b for name, b in paper.items() if name not in duplicates and (wanted is None or name in wanted)]
    for name, path in questions_files.items():
        if name in duplicates or (wanted is not None and name not in wanted):
            continue
        try:
            benchmarks.append(load_plain_benchmark(path))
        except BenchmarkError as error:
            skipped.append(SkippedBenchmark(name, error.reason, str(error)))
    return Suite(folder, sorted(benchmarks, key=lambda b: b.name), sorted(skipped, key=lambda s: (s.name, s.reason)))
