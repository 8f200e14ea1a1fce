"""Evaluate retrievers on a benchmark suite and write the report.

``run_evaluation(config, out_dir)`` loads the suite, segments each document once (as generation
does), maps gold evidence onto units, lets every retriever score every question (all questions on a
document together), computes the metrics, optionally runs the LLM answer-and-judge protocol, and
writes under ``out_dir``::

    config.json            the resolved EvalConfig, code version, counts, evidence mapping, LLM usage
    predictions.parquet    the ``predictions`` artifact (scores per unit, top-k), schema-validated
    questions.csv/.jsonl   one row per question and retriever, every metric
    per_benchmark.*, per_category.*, per_length.*   tables as CSV, JSON and Markdown (95% CIs)
    report.md              all tables
    recall_at_k.png, by_length_*.png                plots
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

from evaluation.benchmarks import Benchmark, Question, load_suite
from evaluation.metrics import answer_containment, mrr, ndcg_at_k, rank_units, recall_at_k
from evaluation.report import length_bucket, write_csv, write_json, write_plots, write_tables
from evaluation.retrievers import Query, Retriever, context_text, make_retriever
from evaluation.units import DocumentUnits, EvidenceIndex, segment_document, units_from_texts
from generators.llm.config import LLMConfig
from pipeline.config import CorpusConfig
from pipeline.drops import Drops
from schemas import schema_for, validate_table

log = logging.getLogger("linkscan")


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
    segment_tokens: int | None = Field(default=None, ge=1)  # None: evaluation.scanning's defaults
    window_tokens: int | None = Field(default=None, ge=1)  # sliding_window mode (paper: 120000)
    stride_tokens: int | None = Field(default=None, ge=1)  # sliding_window mode (paper: 60000)
    device: str = "cpu"
    dense_batch_size: int = Field(default=64, ge=1)
    llm: LLMConfig | None = None  # the answer-and-judge protocol runs when set


@dataclass
class EvalResult:
    out_dir: Path
    rows: list[dict]
    tables: dict[str, list[dict]]
    summary: dict
    plots: list[str] = field(default_factory=list)


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
        "doc_tokens": document.n_tokens,
        "doc_units": len(document),
        "length_bucket": length_bucket(document.n_tokens),
        "evidence_spans": evidence_spans,
        "unmatched_spans": unmatched_spans,
        "gold_units": len(gold),
        "context_units": len(context),
        "context_tokens": _unit_tokens(document, context),
    }
    ranked = ranking.tolist()
    for k in config.ks:
        row[f"recall@{k}"] = recall_at_k(ranked, gold, k) if gold else None
    for k in config.ndcg_ks:
        row[f"ndcg@{k}"] = ndcg_at_k(ranked, gold, k) if gold else None
    row["mrr"] = mrr(ranked, gold) if gold else None
    texts = question.answer_texts()
    row["answer_containment"] = (
        None if question.is_multiple_choice or not texts else answer_containment(context_text(document.units, context), texts)
    )
    return row, context, ranking


def run_evaluation(
    config: EvalConfig,
    out_dir: Path | str,
    *,
    llm_client: object | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate every configured retriever on the suite and write the report to ``out_dir``.

    ``llm_client`` (a :class:`generators.llm.client.LLMClient`) enables the answer-and-judge
    protocol; the caller builds it from ``config.llm`` (the key comes from the environment there).
    """
    from pipeline.segment import Segmenter
    from pipeline.tokenize import load_tokenizer

    started = time.monotonic()
    say = progress or (lambda message: log.info("%s", message))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rid = run_id(config)
    suite = load_suite(config.benchmarks, config.only)
    tokenizer = load_tokenizer(config.corpus.tokenizer)
    segmenter = Segmenter(config.corpus, tokenizer)
    retrievers = [
        make_retriever(
            spec, seed=config.seed, tokenizer=tokenizer, chunk_words=config.chunk_words, top_chunks=config.top_chunks,
            dense_batch_size=config.dense_batch_size, scanner_mode=config.scanner_mode,
            segment_tokens=config.segment_tokens, window_tokens=config.window_tokens,
            stride_tokens=config.stride_tokens, device=config.device,
        )
        for spec in dict.fromkeys(config.retrievers)
    ]
    skipped = Drops()
    evidence: dict[str, dict] = {}
    rows: list[dict] = []
    predictions = PredictionColumns()
    pending: list[tuple[dict, Question, str]] = []  # (row, question, context) for the LLM protocol
    timings: dict[str, float] = {r.name: 0.0 for r in retrievers}
    for benchmark in suite:
        questions = benchmark.questions[: config.max_questions] if config.max_questions else benchmark.questions
        stats = {"spans": 0, "matched": 0, "unmatched": 0, "questions_with_evidence": 0, "questions_without_gold_units": 0}
        for doc_id, doc_questions in _questions_by_document(questions).items():
            if doc_id in benchmark.units:
                document = units_from_texts(doc_id, benchmark.units[doc_id], tokenizer)
            else:
                document = segment_document(doc_id, benchmark.documents[doc_id], segmenter)
            index = EvidenceIndex(document.units, config.evidence_min_overlap)
            matches = {q.id: index.match(q.evidence) for q in doc_questions}
            for q in doc_questions:
                if q.evidence:
                    match = matches[q.id]
                    stats["questions_with_evidence"] += 1
                    stats["spans"] += match.n_spans
                    stats["matched"] += match.matched
                    stats["unmatched"] += len(match.unmatched)
                    if not match.gold_units:
                        stats["questions_without_gold_units"] += 1
                        skipped.add("evidence_matched_no_unit")
            for retriever in retrievers:
                queries = [Query(q.id, q.question, matches[q.id].gold_units) for q in doc_questions]
                if retriever.name == "oracle":  # the oracle only answers where gold units exist
                    for q in doc_questions:
                        if not matches[q.id].gold_units:
                            skipped.add("oracle_without_gold_units")
                    queries = [query for query in queries if query.gold_units]
                    if not queries:
                        continue
                tick = time.monotonic()
                all_scores = retriever.score_document(document, queries)
                timings[retriever.name] += time.monotonic() - tick
                by_id = {q.id: q for q in doc_questions}
                for query, scores in zip(queries, all_scores):
                    question, match = by_id[query.id], matches[query.id]
                    row, context, ranking = question_row(
                        config, benchmark, question, document, retriever, scores, match.gold_units,
                        match.n_spans, len(match.unmatched),
                    )
                    row["run_id"] = rid
                    rows.append(row)
                    predictions.add(benchmark.name, question.id, retriever.name, scores, ranking[: config.k])
                    if llm_client is not None:
                        pending.append((row, question, context_text(document.units, context)))
        evidence[benchmark.name] = stats
        if stats["unmatched"]:
            say(f"{benchmark.name}: {stats['unmatched']} of {stats['spans']} evidence spans matched no unit; "
                f"{stats['questions_without_gold_units']} questions have no gold unit (no retrieval metrics for them)")
        say(f"{benchmark.name}: {len(questions)} questions, {len(_questions_by_document(questions))} documents "
            f"({time.monotonic() - started:.0f} s so far)")
    llm_usage = None
    if llm_client is not None and pending:
        say(f"LLM protocol: {len(pending)} answers to write and judge")
        llm_usage = _run_llm_protocol(llm_client, pending, skipped)
    result = _write_outputs(config, out_dir, rid, rows, predictions, evidence, skipped, timings, llm_usage, started)
    say(f"report written to {out_dir}")
    return result


def _run_llm_protocol(client: object, pending: list[tuple[dict, Question, str]], skipped: Drops) -> dict:
    from evaluation.llm_protocol import PROMPT_VERSION, judge_all

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
            skipped.add(judgement.failure, where=f"{row['benchmark']}/{row['question_id']} ({row['retriever']})")
    return {"prompt_version": PROMPT_VERSION, "model": client.config.model, "usage": client.usage.as_dict()}


def _write_outputs(
    config: EvalConfig,
    out_dir: Path,
    rid: str,
    rows: list[dict],
    predictions: "PredictionColumns",
    evidence: dict,
    skipped: Drops,
    timings: dict[str, float],
    llm_usage: dict | None,
    started: float,
) -> EvalResult:
    from pipeline.store import code_version

    table = predictions.table(rid)
    validate_table(table, "predictions", source=str(out_dir / "predictions.parquet"))
    tmp = out_dir / ".predictions.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out_dir / "predictions.parquet")
    write_csv(out_dir / "questions.csv", rows)
    with open(out_dir / "questions.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tables = write_tables(out_dir, rows, samples=config.bootstrap_samples, seed=config.seed)
    plots = write_plots(out_dir, rows, tables["per_length"], config.ks, config.k)
    summary = {
        "run_id": rid,
        "config": config.model_dump(mode="json"),
        "code": code_version(),
        "questions": len({(r["benchmark"], r["question_id"]) for r in rows}),
        "rows": len(rows),
        "evidence_mapping": evidence,
        "skipped": skipped.as_dict(),
        "retrieval_seconds": {name: round(seconds, 3) for name, seconds in timings.items()},
        "llm": llm_usage,
        "plots": plots,
        "seconds": round(time.monotonic() - started, 3),
    }
    write_json(out_dir / "config.json", summary)
    return EvalResult(out_dir=out_dir, rows=rows, tables=tables, summary=summary, plots=plots)
