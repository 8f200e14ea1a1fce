"""Dense retrieval speed (units embedded per second) on real benchmark documents, the way
`linkscan evaluate` runs it: each document's units encoded once for all its questions.

    .venv/bin/python benchmarks/bench_eval_dense.py --evalsets ../shared/evalsets/dev \
        --tokenizer ../shared/tokenizers/gpt-neox-20b/tokenizer.json [--device cpu|cuda] [--units 800]

Measures, on the first documents of ``--benchmark`` up to ``--units`` units:
- per document (what `evaluate` does; sentence-transformers sorts each call's texts by length
  before batching), for each precision (float32, bfloat16 autocast) and batch size;
- pooled: all documents' units in one call (batches sorted by length across documents);
- per question: the document re-embedded for every question (what a per-question loop pays).
Prints a JSON summary and a Markdown table; medians of --repeats runs; the load average is
printed with it (the dev machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from bench_eval import median_seconds  # benchmarks/ is on the path when a script here runs
from linkscan.evaluation.benchmarks import load_plain_benchmark
from linkscan.evaluation.retrievers import DenseRetriever
from linkscan.evaluation.units import segment_document
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.segment import Segmenter
from linkscan.pipeline.tokenize import load_tokenizer


def documents_up_to(evalsets: Path, benchmark: str, units: int, segmenter) -> list:
    bench = load_plain_benchmark(evalsets / f"{benchmark}.questions.jsonl")
    documents, total = [], 0
    for doc_id, text in bench.documents.items():
        document = segment_document(doc_id, text, segmenter)
        documents.append(document)
        total += len(document)
        if total >= units:
            break
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evalsets", type=Path, default=Path("../shared/evalsets/dev"))
    parser.add_argument("--tokenizer", default="../shared/tokenizers/gpt-neox-20b/tokenizer.json")
    parser.add_argument("--benchmark", default="legal_contract_qa")
    parser.add_argument("--units", type=int, default=800)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--questions", type=int, default=3, help="questions per document for the per-question row")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    tokenizer = load_tokenizer(args.tokenizer)
    documents = documents_up_to(args.evalsets, args.benchmark, args.units, Segmenter(CorpusConfig(), tokenizer))
    n_units = sum(len(d) for d in documents)
    results = {
        "machine": f"{platform.machine()} cores={os.cpu_count()} torch_threads={torch.get_num_threads()} device={args.device}",
        "load_average_before": os.getloadavg(), "benchmark": args.benchmark, "documents": len(documents),
        "units": n_units, "tokens": sum(d.n_tokens for d in documents), "repeats": args.repeats, "rows": [],
    }
    DenseRetriever(device=args.device).encode(documents[0].units[:64])  # load the model once
    for precision in ("float32", "bfloat16"):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            retriever = DenseRetriever(device=args.device, batch_size=batch_size, precision=precision)
            seconds = median_seconds(lambda: [retriever.encode(d.units) for d in documents], args.repeats)
            results["rows"].append({"what": "per document", "precision": precision, "batch_size": batch_size,
                                    "seconds": seconds, "units_per_s": n_units / seconds})
            pooled = median_seconds(lambda: retriever.encode([u for d in documents for u in d.units]), args.repeats)
            results["rows"].append({"what": "pooled across documents", "precision": precision, "batch_size": batch_size,
                                    "seconds": pooled, "units_per_s": n_units / pooled})
    retriever = DenseRetriever(device=args.device)
    once = median_seconds(lambda: [retriever.score_passages(d.units, ["q?"] * args.questions) for d in documents], 1)
    each = median_seconds(lambda: [retriever.score_passages(d.units, ["q?"]) for d in documents for _ in range(args.questions)], 1)
    results["rows"].append({"what": f"{args.questions} questions per document, document encoded once", "precision": "float32",
                            "batch_size": retriever.batch_size, "seconds": once, "units_per_s": n_units / once})
    results["rows"].append({"what": f"{args.questions} questions per document, re-encoded per question", "precision": "float32",
                            "batch_size": retriever.batch_size, "seconds": each, "units_per_s": n_units / each})
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    print()
    print(f"{results['machine']}; {len(documents)} {args.benchmark} documents, {n_units:,} units, {results['tokens']:,} tokens; "
          f"load average {results['load_average_before'][0]:.1f} before, {results['load_average_after'][0]:.1f} after")
    print()
    print("| what | precision | batch | seconds | units/s |")
    print("|---|---|---:|---:|---:|")
    for row in results["rows"]:
        print(f"| {row['what']} | {row['precision']} | {row['batch_size']} | {row['seconds']:.1f} | {row['units_per_s']:,.1f} |")


if __name__ == "__main__":
    main()
