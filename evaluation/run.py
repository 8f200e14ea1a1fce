"""Evaluate retrievers on a benchmark suite and write the report.

``run_evaluation(config, out_dir)`` loads the suite (each benchmark validated on its own; a broken
one is skipped with its reason), says up front which metrics each benchmark gives and what the work
is (``linkscan.evaluation.plan``), then benchmark by benchmark: segments each document once (as generation
does), maps gold evidence onto units, lets every retriever score every question (all questions on a
document together), computes the metrics, optionally runs the LLM answer-and-judge protocol, and
writes the benchmark's rows and predictions as soon as it finishes (``linkscan.evaluation.finished``), so a
stopped run keeps them and rerunning it resumes. At the end it writes under ``out_dir``::

    config.json            the resolved EvalConfig, code version, counts, skips, evidence mapping,
                           retrieval speed (units/s), LLM usage
    predictions.parquet    the ``predictions`` artifact (scores per unit, top-k), schema-validated
    questions.csv/.jsonl   one row per question and retriever, every metric
    per_benchmark.*, per_category.*, per_length.*   tables as CSV, JSON and Markdown (95% CIs, n)
    report.md              all tables, and what could not be measured
    recall_at_k.png, by_length_*.png                plots
    benchmarks/<name>/     each finished benchmark's rows, predictions and summary
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from linkscan.evaluation.benchmarks import Benchmark, BenchmarkError, Question, SkippedBenchmark, load_suite
from linkscan.evaluation.finished import (
    BenchmarkResult, claim_out_dir, input_fingerprint, read_benchmark, write_benchmark,
)
from linkscan.evaluation.metrics import (
    answer_containment, expected_random_metrics, hit_at_k, mrr, ndcg_at_k, rank_units, recall_at_k,
)
from linkscan.evaluation.plan import describe_plan, plan_suite, selected_questions
from linkscan.evaluation.report import length_bucket, write_csv, write_json, write_plots, write_tables
from linkscan.evaluation.retrievers import Query, Retriever, context_text, make_retriever
from linkscan.evaluation.units import DocumentUnits, EvidenceIndex, EvidenceMatch, segment_document, units_from_texts
from linkscan.generators.llm.config import LLMConfig
from linkscan.pipeline.config import CorpusConfig
from linkscan.schemas import schema_for, validate_table

log = logging.getLogger("linkscan")

# Question-level reasons that mean a metric that applies could not be measured (the run is then
# incomplete: the CLI exits non-zero). The others say a metric does not apply (no gold unit).
NOT_MEASURED_REASONS = frozenset({"empty_document", "llm_answer_failed", "llm_judge_failed", "judge_unparsed"})
RANDOM_EXPECTED = "random (expected)"
PROGRESS_EVERY_S = 60.0


class NothingToEvaluate(BenchmarkError):
    """Every benchmark of the suite was skipped; the message lists each with its reason."""


class EvalConfig(BaseModel):
    """Everything that decides an evaluation's numbers (stored with the results)."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: str  # a folder of benchmark files (a suite)
    only: list[str] | None = None  # benchmark names to keep
    retrievers: list[str] = Field(default_factory=lambda: ["bm25"], min_length=1)
    k: int = Field(default=50, ge=1)  # units handed to the reader (the paper: 50)
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50, 100])  # recall@k cut-offs
    ndcg_ks: list[int] = Field(default_factory=lambda: [10, 50])
    chunk_words: int = Field(default=300, ge=1)  # chunk size of the *-chunks baselines
    top_chunks: int = Field(default=5, ge=1)  # chunks handed to the reader by *-chunks baselines
    max_questions: int | None = Field(default=None, ge=1)  # per benchmark, the first N (for quick runs)
    evidence_min_overlap: float = Field(default=0.5, gt=0, le=1)
    seed: int = 0  # random retriever and bootstrap
    bootstrap_samples: int = Field(default=1000, ge=10)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)  # segmentation and tokenizer, as in generation
    scanner_mode: Literal["single_pass", "sliding_window"] = "single_pass"
    segment_tokens: int | None = Field(default=None, ge=1)  # None: linkscan.evaluation.scanning's defaults
    window_tokens: int | None = Field(default=None, ge=1)  # sliding_window mode (paper: 120000)
    stride_tokens: int | None = Field(default=None, ge=1)  # sliding_window mode (paper: 60000)
    device: str = "cpu"
    dense_batch_size: int = Field(default=64, ge=1)
    dense_precision: Literal["float32", "bfloat16"] = "float32"
    llm: LLMConfig | None = None  # the answer-and-judge protocol runs when set
    include_unscored: bool = False  # also evaluate benchmarks where no metric applies (predictions only)

    @property
    def recall_ks(self) -> list[int]:
        """The recall@k and hit@k cut-offs: ``ks`` and the reader's ``k``, so --k always gets its column."""
        return sorted({*self.ks, self.k})


@dataclass
class EvalResult:
    out_dir: Path
    rows: list[dict]
    tables: dict[str, list[dict]]
    summary: dict
    plots: list[str] = field(default_factory=list)
    skipped_benchmarks: list[SkippedBenchmark] = field(default_factory=list)
    # benchmark -> reason -> questions where a metric that applies could not be measured
    not_measured: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # benchmarks left unfinished (LLM requests to retry)

    @property
    def complete(self) -> bool:
        """Everything asked for was measured: nothing skipped, nothing waiting."""
        return not self.skipped_benchmarks and not any(self.not_measured.values()) and not self.waiting


class PredictionColumns:
    """The ``predictions`` artifact built column by column: scores stay float32 arrays (a run holds
    millions of unit scores, far too many for Python float lists)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {"benchmark": [], "question_id": [], "retriever": []}
        self.scores: list[np.ndarray] = []
        self.top_k: list[np.ndarray] = []

    def add(self, benchmark: str, question_id: str, retriever: str, scores: np.ndarray, top_k: np.ndarray) -> None:
        for name, value in (("benchmark", benchmark), ("question_id", question_id), ("retriever", retriever)):
            self.keys[name].append(value)
        self.scores.append(np.asarray(scores, dtype=np.float32))
        self.top_k.append(np.asarray(top_k, dtype=np.int32))

    def table(self, run: str) -> pa.Table:
        def lists(parts: list[np.ndarray], dtype: type) -> pa.ListArray:
            offsets = np.zeros(len(parts) + 1, dtype=np.int32)
            np.cumsum([len(p) for p in parts], out=offsets[1:])
            values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(dtype)))

        columns = {
            "run_id": pa.array([run] * len(self.scores), pa.string()),
            **{name: pa.array(values, pa.string()) for name, values in self.keys.items()},
            "scores": lists(self.scores, np.float32),
            "top_k": lists(self.top_k, np.int32),
        }
        schema = schema_for("predictions")
        return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def run_id(config: EvalConfig) -> str:
    """A short stable id of the resolved config (the default name of the report folder)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _questions_by_document(questions: list[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.doc_id, []).append(question)
    return groups


def _unit_tokens(document: DocumentUnits, indices: list[int]) -> int:
    ends = document.sentence_ends
    return sum(ends[i] - (ends[i - 1] if i else -1) for i in indices)


def _retrieval_metrics(config: EvalConfig, ranked: list[int], gold: tuple[int, ...]) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for k in config.recall_ks:
        metrics[f"recall@{k}"] = recall_at_k(ranked, gold, k) if gold else None
    for k in config.recall_ks:
        metrics[f"hit@{k}"] = hit_at_k(ranked, gold, k) if gold else None
    for k in config.ndcg_ks:
        metrics[f"ndcg@{k}"] = ndcg_at_k(ranked, gold, k) if gold else None
    metrics["mrr"] = mrr(ranked, gold) if gold else None
    return metrics


def question_row(
    config: EvalConfig,
    benchmark: Benchmark,
    question: Question,
    document: DocumentUnits,
    retriever: Retriever,
    scores: np.ndarray,
    gold: tuple[int, ...],
    evidence_spans: int,
    unmatched_spans: int,
) -> tuple[dict, list[int], np.ndarray]:
    """The metrics of one retriever on one question; also its context units and ranking."""
    ranking = rank_units(scores)
    context = retriever.context_units(document, scores, config.k)
    row: dict = {
        "benchmark": benchmark.name,
        "question_id": question.id,
        "doc_id": question.doc_id,
        "category": question.category,
        "retriever": retriever.name,
        "granularity": retriever.granularity,
        "multiple_choice": question.is_multiple_choice,
        "answer_type": question.answer_type,
        "doc_tokens": document.n_tokens,
        "doc_units": len(document),
        "length_bucket": length_bucket(document.n_tokens),
        "evidence_spans": evidence_spans,
        "unmatched_spans": unmatched_spans,
        "gold_units": len(gold),
        "context_units": len(context),
        "context_tokens": _unit_tokens(document, context),
        **_retrieval_metrics(config, ranking.tolist(), gold),
    }
    texts = question.answer_texts()
    row["answer_containment"] = (
        None if question.is_multiple_choice or not texts else answer_containment(context_text(document.units, context), texts)
    )
    return row, context, ranking


def expected_random_row(config: EvalConfig, random_row: dict) -> dict:
    """Beside the seeded random draw: the exact expectation of its retrieval metrics."""
    row = {**random_row, "retriever": RANDOM_EXPECTED, "context_units": None, "context_tokens": None,
           "answer_containment": None}
    row.update(expected_random_metrics(random_row["doc_units"], random_row["gold_units"], config.recall_ks, config.ndcg_ks))
    return row


def build_retrievers(config: EvalConfig, tokenizer: object) -> list[Retriever]:
    """The configured retrievers, each prepared (models loaded), so a bad one fails before any work."""
    retrievers = [
        make_retriever(
            spec, seed=config.seed, tokenizer=tokenizer, chunk_words=config.chunk_words, top_chunks=config.top_chunks,
            dense_batch_size=config.dense_batch_size, dense_precision=config.dense_precision,
            scanner_mode=config.scanner_mode, segment_tokens=config.segment_tokens, window_tokens=config.window_tokens,
            stride_tokens=config.stride_tokens, device=config.device,
        )
        for spec in dict.fromkeys(config.retrievers)
    ]
    for retriever in retrievers:
        retriever.prepare()
    return retrievers


@dataclass
class _Speed:
    """What one retriever did: units and tokens counted once per document (what bm25 indexes and
    dense embeds), ``tokens_read`` once per question (what a scanner reads)."""

    seconds: float = 0.0
    documents: int = 0
    units: int = 0
    tokens: int = 0
    questions: int = 0
    tokens_read: int = 0

    def add(self, seconds: float, document: DocumentUnits, questions: int) -> None:
        self.seconds += seconds
        self.documents += 1
        self.units += len(document)
        self.tokens += document.n_tokens
        self.questions += questions
        self.tokens_read += document.n_tokens * questions

    def merge(self, other: dict) -> None:
        for name in ("seconds", "documents", "units", "tokens", "questions", "tokens_read"):
            setattr(self, name, getattr(self, name) + other[name])

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "documents": self.documents, "units": self.units, "tokens": self.tokens,
                "questions": self.questions, "tokens_read": self.tokens_read,
                "units_per_s": round(self.units / self.seconds, 1) if self.seconds else None}


def _document_units(benchmark: Benchmark, doc_id: str, tokenizer: object, segmenter: object) -> DocumentUnits:
    if doc_id in benchmark.units:
        return units_from_texts(doc_id, benchmark.units[doc_id], tokenizer)
    return segment_document(doc_id, benchmark.documents[doc_id], segmenter)


def _match_evidence(document: DocumentUnits, questions: list[Question], min_overlap: float, stats: dict,
                    skip: Callable[[str], None]) -> dict[str, EvidenceMatch]:
    """Gold units of each question on one document; the mapping is counted in ``stats``."""
    index = EvidenceIndex(document.units, min_overlap)
    matches = {q.id: index.match(q.evidence) for q in questions}
    for q in questions:
        if q.evidence:
            match = matches[q.id]
            stats["questions_with_evidence"] += 1
            stats["spans"] += match.n_spans
            stats["matched"] += match.matched
            stats["unmatched"] += len(match.unmatched)
            if not match.gold_units:
                stats["questions_without_gold_units"] += 1
                skip("evidence_matched_no_unit")
    return matches


def evaluate_benchmark(
    config: EvalConfig,
    benchmark: Benchmark,
    retrievers: list[Retriever],
    tokenizer: object,
    segmenter: object,
    rid: str,
    llm_client: object | None,
    say: Callable[[str], None] = log.info,
) -> BenchmarkResult:
    """Every retriever on every question of one benchmark, then (with a client) the LLM protocol.
    A long benchmark says how far it is about once every ``PROGRESS_EVERY_S`` seconds."""
    questions = selected_questions(benchmark, config.max_questions)
    skipped: dict[str, int] = {}
    stats = {"spans": 0, "matched": 0, "unmatched": 0, "questions_with_evidence": 0, "questions_without_gold_units": 0,
             "empty_documents": []}
    rows: list[dict] = []
    predictions = PredictionColumns()
    pending: list[tuple[dict, Question, str]] = []  # (row, question, context) for the LLM protocol
    speed = {r.name: _Speed() for r in retrievers}

    def skip(reason: str, n: int = 1) -> None:
        if n:
            skipped[reason] = skipped.get(reason, 0) + n

    by_document = _questions_by_document(questions)
    last_said = time.monotonic()
    for done, (doc_id, doc_questions) in enumerate(by_document.items()):
        if time.monotonic() - last_said > PROGRESS_EVERY_S:
            say(f"{benchmark.name}: {done} of {len(by_document)} documents scored")
            last_said = time.monotonic()
        document = _document_units(benchmark, doc_id, tokenizer, segmenter)
        if not any(unit.strip() for unit in document.units):  # nothing to retrieve: no metric can be measured
            skip("empty_document", len(doc_questions))
            stats["empty_documents"].append(doc_id)
            continue
        matches = _match_evidence(document, doc_questions, config.evidence_min_overlap, stats, skip)
        by_id = {q.id: q for q in doc_questions}
        for retriever in retrievers:
            queries = [Query(q.id, q.question, matches[q.id].gold_units) for q in doc_questions]
            if retriever.name == "oracle":  # the oracle only answers where gold units exist
                skip("oracle_without_gold_units", sum(1 for query in queries if not query.gold_units))
                queries = [query for query in queries if query.gold_units]
                if not queries:
                    continue
            tick = time.monotonic()
            all_scores = retriever.score_document(document, queries)
            speed[retriever.name].add(time.monotonic() - tick, document, len(queries))
            for query, scores in zip(queries, all_scores):
                question, match = by_id[query.id], matches[query.id]
                row, context, ranking = question_row(
                    config, benchmark, question, document, retriever, scores, match.gold_units,
                    match.n_spans, len(match.unmatched),
                )
                row["run_id"] = rid
                rows.append(row)
                predictions.add(benchmark.name, question.id, retriever.name, scores, ranking[: config.k])
                if retriever.name == "random" and match.gold_units:
                    rows.append(expected_random_row(config, row))
                if llm_client is not None:
                    pending.append((row, question, context_text(document.units, context)))
    waiting = _run_llm_protocol(llm_client, pending, skip) if llm_client is not None and pending else 0
    return BenchmarkResult(
        name=benchmark.name, rows=rows, predictions=predictions.table(rid), evidence=stats,
        skipped_questions=dict(sorted(skipped.items())),
        retrieval={name: s.as_dict() for name, s in speed.items() if s.documents}, waiting=waiting,
    )


def speed_text(name: str, speed: dict) -> str:
    """``dense 12.3 s (2,345 units, 190.7 units/s)``; no rate for what takes no measurable time."""
    rate = f", {speed['units_per_s']:,.1f} units/s" if speed["units_per_s"] and speed["seconds"] >= 0.05 else ""
    return f"{name} {speed['seconds']:.1f} s ({speed['units']:,} units{rate})"


def _speed_text(result: BenchmarkResult) -> str:
    return "; ".join(speed_text(name, speed) for name, speed in result.retrieval.items())


def _report_benchmark(say: Callable[[str], None], result: BenchmarkResult, questions: int, started: float) -> None:
    stats = result.evidence
    if stats["unmatched"]:
        say(f"{result.name}: {stats['unmatched']} of {stats['spans']} evidence spans matched no unit; "
            f"{stats['questions_without_gold_units']} questions have no gold unit (no retrieval metrics for them)")
    if stats["empty_documents"]:
        say(f"{result.name}: {result.skipped_questions['empty_document']} questions skipped (empty_document): "
            f"document(s) {', '.join(stats['empty_documents'])} hold no text")
    say(f"{result.name}: {questions} questions done; {_speed_text(result)} ({time.monotonic() - started:.0f} s so far)")


def _nothing_to_evaluate(folder: str, skipped: list[SkippedBenchmark]) -> NothingToEvaluate:
    reasons = "; ".join(f"{s.name} ({s.reason}: {s.detail})" for s in skipped)
    return NothingToEvaluate(f"{folder}: nothing to evaluate, every benchmark was skipped: {reasons}", "nothing_to_evaluate")


def run_evaluation(
    config: EvalConfig,
    out_dir: Path | str,
    *,
    tokenizer: object | None = None,
    llm_client: object | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate every configured retriever on the suite and write the report to ``out_dir``.

    ``tokenizer`` is the loaded ``config.corpus.tokenizer`` (the CLI resolves it, offline-safe),
    else it is loaded here. ``llm_client`` (a :class:`linkscan.generators.llm.client.LLMClient`) enables the
    answer-and-judge protocol; the caller builds it from ``config.llm`` (the key comes from the
    environment there). Benchmarks finished earlier in ``out_dir`` by the same run are reused.
    Raises NothingToEvaluate when every benchmark is skipped (before writing anything).
    """
    from linkscan.pipeline.segment import Segmenter
    from linkscan.pipeline.tokenize import load_tokenizer

    started = time.monotonic()
    say = progress or (lambda message: log.info("%s", message))
    out_dir = Path(out_dir)
    rid = run_id(config)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.corpus.tokenizer)
    segmenter = Segmenter(config.corpus, tokenizer)
    retrievers = build_retrievers(config, tokenizer)
    suite = load_suite(config.benchmarks, config.only)
    planned, unscored = plan_suite(suite.benchmarks, config.max_questions, config.llm is not None, config.include_unscored)
    skipped = sorted([*suite.skipped, *unscored], key=lambda s: (s.name, s.reason))
    if not planned:
        raise _nothing_to_evaluate(config.benchmarks, skipped)
    out_dir.mkdir(parents=True, exist_ok=True)
    claim_out_dir(out_dir, rid)
    fingerprints = {benchmark.name: input_fingerprint(benchmark.files) for benchmark, _ in planned}
    earlier = {b.name: read_benchmark(out_dir, b.name, rid, fingerprints[b.name]) for b, _ in planned}
    finished = [name for name, result in earlier.items() if result is not None]
    for line in describe_plan([plan for _, plan in planned], skipped, [r.name for r in retrievers], finished):
        say(line)
    if finished:
        say(f"resuming run {rid} in {out_dir}: {len(finished)} of {len(planned)} benchmarks finished earlier are kept")
    results: list[BenchmarkResult] = []
    for benchmark, plan in planned:
        result = earlier[benchmark.name]
        if result is None:
            result = evaluate_benchmark(config, benchmark, retrievers, tokenizer, segmenter, rid, llm_client, say)
            if result.waiting:  # not finished: a rerun retries those requests (the LLM cache keeps the rest)
                say(f"{benchmark.name}: {result.waiting} LLM requests failed for a transient reason; "
                    "not marked finished, rerun the same command to retry them")
            else:
                write_benchmark(out_dir, rid, fingerprints[benchmark.name], result)
            _report_benchmark(say, result, plan.questions, started)
        results.append(result)
    llm_usage = _llm_usage(llm_client) if llm_client is not None else None
    result = _write_outputs(config, out_dir, rid, results, skipped, llm_usage, started)
    say(f"report written to {out_dir}")
    return result


def _run_llm_protocol(client: object, pending: list[tuple[dict, Question, str]], skip: Callable[[str], None]) -> int:
    """Answer and judge one benchmark's questions; returns how many failed for a transient reason."""
    from linkscan.evaluation.llm_protocol import judge_all

    async def go():
        try:
            return await judge_all(client, [(question, context) for _, question, context in pending])
        finally:
            await client.aclose()

    judgements = asyncio.run(go())
    for (row, _, _), judgement in zip(pending, judgements):
        row["llm_answer"] = judgement.answer
        row["llm_correct"] = None if judgement.correct is None else float(judgement.correct)
        row["token_f1"] = judgement.token_f1
        if judgement.failure:
            skip(judgement.failure)
            log.warning("%s/%s (%s): no LLM verdict (%s)", row["benchmark"], row["question_id"], row["retriever"], judgement.failure)
    return sum(1 for judgement in judgements if judgement.transient)


def _llm_usage(client: object) -> dict:
    from linkscan.evaluation.llm_protocol import PROMPT_VERSION

    return {"prompt_version": PROMPT_VERSION, "model": client.config.model, "usage": client.usage.as_dict(),
            "note": "requests of this invocation; benchmarks resumed from the output folder made none"}


def _write_predictions(out_dir: Path, results: list[BenchmarkResult]) -> None:
    tables = [r.predictions for r in results]
    table = pa.concat_tables(tables) if tables else PredictionColumns().table("")
    validate_table(table, "predictions", source=str(out_dir / "predictions.parquet"))
    tmp = out_dir / ".predictions.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out_dir / "predictions.parquet")


def _merged_speed(results: list[BenchmarkResult]) -> dict[str, dict]:
    """Each retriever's work and speed over all benchmarks of the report (resumed ones included)."""
    merged: dict[str, _Speed] = {}
    for result in results:
        for name, speed in result.retrieval.items():
            merged.setdefault(name, _Speed()).merge(speed)
    return {name: speed.as_dict() for name, speed in merged.items()}


def _write_outputs(
    config: EvalConfig,
    out_dir: Path,
    rid: str,
    results: list[BenchmarkResult],
    skipped: list[SkippedBenchmark],
    llm_usage: dict | None,
    started: float,
) -> EvalResult:
    from linkscan.pipeline.store import code_version

    rows = [row for result in results for row in result.rows]
    _write_predictions(out_dir, results)
    write_csv(out_dir / "questions.csv", rows)
    with open(out_dir / "questions.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    skipped_questions = {r.name: r.skipped_questions for r in results if r.skipped_questions}
    skipped_dicts = [s.as_dict() for s in skipped]
    tables = write_tables(out_dir, rows, samples=config.bootstrap_samples, seed=config.seed,
                          skipped_benchmarks=skipped_dicts, skipped_questions=skipped_questions)
    plots = write_plots(out_dir, rows, tables["per_length"], config.recall_ks, config.k)
    skipped_counts: dict[str, int] = {}
    for reasons in skipped_questions.values():
        for reason, n in reasons.items():
            skipped_counts[reason] = skipped_counts.get(reason, 0) + n
    not_measured = {name: {reason: n for reason, n in reasons.items() if reason in NOT_MEASURED_REASONS}
                    for name, reasons in skipped_questions.items()}
    not_measured = {name: reasons for name, reasons in not_measured.items() if reasons}
    waiting = [r.name for r in results if r.waiting]
    speed = _merged_speed(results)
    summary = {
        "run_id": rid,
        "config": config.model_dump(mode="json"),
        "code": code_version(),
        "benchmarks": [r.name for r in results],
        "resumed": [r.name for r in results if r.resumed],
        "waiting": waiting,
        "questions": len({(r["benchmark"], r["question_id"]) for r in rows}),
        "rows": len(rows),
        "skipped_benchmarks": skipped_dicts,
        "skipped": dict(sorted(skipped_counts.items())),
        "skipped_questions": skipped_questions,
        "evidence_mapping": {r.name: r.evidence for r in results},
        "retrieval": speed,
        "retrieval_seconds": {name: s["seconds"] for name, s in speed.items()},
        "llm": llm_usage,
        "plots": plots,
        "seconds": round(time.monotonic() - started, 3),
    }
    write_json(out_dir / "config.json", summary)
    return EvalResult(out_dir=out_dir, rows=rows, tables=tables, summary=summary, plots=plots,
                      skipped_benchmarks=skipped, not_measured=not_measured, waiting=waiting)
