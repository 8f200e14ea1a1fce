"""Throughput of `linkscan generate` with the offline generator, end to end, on the dev corpus.

Measures, per configuration, fresh runs of ``run_generation`` (reading, cleaning, language filter,
segmentation, tokenization, chunking, link graphs, questions, evidence, assembly, Parquet shards,
card and manifest) into a new data folder each time, and, side by side, the corpus stage alone
(``corpus_to_chunks``, no generation, no writing), so the cost of generation shows as a ratio.

Reported: wall seconds, CPU seconds of the process (all threads: the tokenizer may use several),
MB of corpus text per CPU second (= per core), and examples per wall and per CPU second.

    .venv/bin/python benchmarks/bench_generate.py                      # link method, 3 repeats
    .venv/bin/python benchmarks/bench_generate.py --methods link,chunk,pair --repeats 3
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from linkscan.generators.config import load_config  # noqa: E402
from linkscan.generators.stage import run_generation  # noqa: E402
from linkscan.pipeline.corpus import corpus_to_chunks  # noqa: E402
from linkscan.pipeline.drops import Drops  # noqa: E402


def measure(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def corpus_only(config) -> dict:
    chunks = 0
    chars = 0
    for document, document_chunks in corpus_to_chunks(config.corpus, config.corpus_config, Drops()):
        chunks += len(document_chunks)
        chars += document.n_chars
    return {"chunks": chunks, "document_chars": chars, "examples": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", default=sorted(glob.glob(str(REPO.parent / "shared/corpora/dev/*.jsonl.gz"))))
    parser.add_argument("--tokenizer", default=str(REPO.parent / "shared/tokenizers/gpt-neox-20b/tokenizer.json"))
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--methods", default="link", help="comma-separated: link, chunk, pair")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    corpus_bytes = sum(Path(p).stat().st_size for p in args.corpus)
    print(f"corpus: {len(args.corpus)} files, {corpus_bytes / 1e6:.1f} MB compressed; chunk_tokens {args.chunk_tokens}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for label in ["corpus stage only", *args.methods.split(",")]:
        runs = []
        for repeat in range(args.repeats):
            config = load_config(None, {
                "name": "bench",
                "corpus": args.corpus,
                "method": label if label != "corpus stage only" else "link",
                "corpus_config.tokenizer": args.tokenizer,
                "corpus_config.chunk_tokens": args.chunk_tokens,
            })
            with tempfile.TemporaryDirectory(prefix="bench-generate-") as data_root:
                if label == "corpus stage only":
                    wall, cpu, counts = measure(lambda: corpus_only(config))
                else:
                    wall, cpu, result = measure(lambda: run_generation(config, data_root))
                    counts = result.manifest["counts"]
            mb = counts["document_chars"] / 1e6
            runs.append({"wall": wall, "cpu": cpu, "mb": mb, "examples": counts["examples"], "chunks": counts["chunks"]})
            print(f"  {label} run {repeat + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU, {mb:.1f} MB text, "
                  f"{counts['chunks']} chunks, {counts['examples']} examples, load {os.getloadavg()[0]:.1f}", flush=True)
        median = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu")}
        rows.append((label, runs, median))

    base_cpu = rows[0][2]["cpu"]
    print()
    print("| what (median of %d) | wall s | CPU s | MB text / CPU s (per core) | examples | examples / wall s | examples / CPU s | CPU vs corpus stage |" % args.repeats)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, runs, median in rows:
        mb, examples = runs[0]["mb"], runs[0]["examples"]
        print(f"| {label} | {median['wall']:.1f} | {median['cpu']:.1f} | {mb / median['cpu']:.2f} | {examples:,} | "
              f"{examples / median['wall']:.1f} | {examples / median['cpu']:.1f} | {median['cpu'] / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
