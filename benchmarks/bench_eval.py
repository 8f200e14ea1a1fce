"""Evaluation speed on CPU: segmenting a long benchmark document, and per-question retrieval latency
when the questions on one document share its index (our design) versus re-indexing per question
(what a per-question loop, like the paper's prediction scripts, pays).

    .venv/bin/python benchmarks/bench_eval.py --evalsets ../shared/evalsets/dev \
        --tokenizer ../shared/tokenizers/gpt-neox-20b/tokenizer.json

Prints a JSON summary (medians over --repeats runs) and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from linkscan.evaluation.benchmarks import load_plain_benchmark
from linkscan.evaluation.retrievers import Query, make_retriever
from linkscan.evaluation.units import segment_document
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.segment import Segmenter
from linkscan.pipeline.tokenize import load_tokenizer


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pick_document(evalsets: Path, benchmark: str, max_chars: int | None):
    """The longest document of a benchmark (under max_chars) and the questions asked about it
    (padded with questions from other documents when it has fewer than needed)."""
    bench = load_plain_benchmark(evalsets / f"{benchmark}.questions.jsonl")
    docs = [(len(t), d) for d, t in bench.documents.items() if max_chars is None or len(t) <= max_chars]
    _, doc_id = max(docs)
    own = [q for q in bench.questions if q.doc_id == doc_id]
    others = [q for q in bench.questions if q.doc_id != doc_id]
    return doc_id, bench.documents[doc_id], own + others


def long_document_latency(args, tokenizer, segmenter) -> list[dict]:
    """Latency of one question (index or embed the document, then score) on a long document made
    of the long-dialogue benchmark's documents, concatenated and cut at ``--long-tokens`` tokens."""
    bench = load_plain_benchmark(args.evalsets / f"{args.long_benchmark}.questions.jsonl")
    parts, tokens = [], 0
    for text in sorted(bench.documents.values(), key=len, reverse=True):
        parts.append(text)
        tokens += len(tokenizer.encode(text, add_special_tokens=False).ids)
        if tokens >= args.long_tokens:
            break
    text = "\n\n".join(parts)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    if len(encoding.ids) > args.long_tokens:  # cut at the token boundary, so the document has that many tokens
        text = text[: encoding.offsets[args.long_tokens][0]]
    document = segment_document("long", text, segmenter)
    query = [Query(bench.questions[0].id, bench.questions[0].question)]
    rows = []
    for name, repeats in (("bm25", args.repeats), ("dense", 1)):
        retriever = make_retriever(name, tokenizer=tokenizer)
        if name == "dense":
            retriever.score_document(segment_document("warm", parts[0][:2000], segmenter), query)  # model load
        seconds = median_seconds(lambda: retriever.score_document(document, query), repeats)
        rows.append({"what": f"long document, {name}, one question", "doc_tokens": document.n_tokens,
                     "units": len(document), "seconds": seconds, "repeats": repeats})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evalsets", type=Path, default=Path("../shared/evalsets/dev"))
    parser.add_argument("--tokenizer", default="../shared/tokenizers/gpt-neox-20b/tokenizer.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--long-benchmark", default="longbench_v2_long_dialogue")
    parser.add_argument("--dense-benchmark", default="natural_question")
    parser.add_argument("--dense-max-chars", type=int, default=120_000)
    parser.add_argument("--long-tokens", type=int, default=0,
                        help="also time one question on a document of at least this many tokens (real dev text "
                             "concatenated), e.g. 262144; dense runs once there (minutes on CPU)")
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.tokenizer)
    segmenter = Segmenter(CorpusConfig(), tokenizer)
    results: dict = {"machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}".strip(),
                     "repeats": args.repeats, "questions": args.questions, "rows": []}

    cases = [("bm25", args.long_benchmark, None), ("dense", args.dense_benchmark, args.dense_max_chars)]
    segmented: dict[str, object] = {}
    for name, benchmark, max_chars in cases:
        doc_id, text, questions = pick_document(args.evalsets, benchmark, max_chars)
        if doc_id not in segmented:
            seconds = median_seconds(lambda: segment_document(doc_id, text, segmenter), args.repeats)
            segmented[doc_id] = segment_document(doc_id, text, segmenter)
            document = segmented[doc_id]
            results["rows"].append({"what": "segment+tokenize", "benchmark": benchmark, "doc_chars": len(text),
                                    "doc_tokens": document.n_tokens, "units": len(document), "seconds": seconds,
                                    "tokens_per_s": document.n_tokens / seconds})
        document = segmented[doc_id]
        queries = [Query(q.id, q.question) for q in questions[: args.questions]]
        retriever = make_retriever(name, tokenizer=tokenizer)
        retriever.score_document(document, queries[:1])  # warm up (model load)
        shared = median_seconds(lambda: retriever.score_document(document, queries), args.repeats) / len(queries)
        alone = median_seconds(lambda: retriever.score_document(document, queries[:1]), args.repeats)
        results["rows"].append({"what": f"{name} per question", "benchmark": benchmark, "doc_tokens": document.n_tokens,
                                "units": len(document), "shared_index_s": shared, "per_question_index_s": alone,
                                "speedup": alone / shared})
    if args.long_tokens:
        results["rows"].extend(long_document_latency(args, tokenizer, segmenter))
    print(json.dumps(results, indent=2))
    print()
    print(f"machine: {results['machine']}; medians of {args.repeats} runs; {args.questions} questions per document")
    print()
    print("| measurement | document tokens | units | shared index (s/question) | re-index per question (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for row in results["rows"]:
        if row["what"] == "segment+tokenize":
            print(f"| segment+tokenize ({row['benchmark']}) | {row['doc_tokens']:,} | {row['units']:,} | "
                  f"{row['seconds']:.2f} s total, {row['tokens_per_s']:,.0f} tokens/s | | |")
        elif row["what"].startswith("long"):
            print(f"| {row['what']} | {row['doc_tokens']:,} | {row['units']:,} | | {row['seconds']:.3f} | |")
        else:
            print(f"| {row['what']} ({row['benchmark']}) | {row['doc_tokens']:,} | {row['units']:,} | "
                  f"{row['shared_index_s']:.4f} | {row['per_question_index_s']:.4f} | {row['speedup']:.1f}x |")


if __name__ == "__main__":
    main()
