"""Benchmark: corpus -> chunks (read, clean, language filter, segment, tokenize, chunk) against plain
`tokenizers` encoding of the same text on the same cores, plus peak memory against corpus size.

    .venv/bin/python benchmarks/bench_pipeline.py                       # throughput + memory
    .venv/bin/python benchmarks/bench_pipeline.py --repeats 5 --segmenter regex

Throughput is characters of input text per second. The raw baseline reads the same documents into
memory first and times only `Tokenizer.encode_batch` over them (all cores, as the stage's own
encoding uses); the stage is timed from the compressed files to finished chunks. Runs alternate
(raw, stage, raw, stage...) so load from other processes hits both alike; medians are reported.

Memory: the stage runs in fresh processes over 1x, 2x and 4x copies of the same documents (each
copy made unique with a marker line, so no copy is dropped as a duplicate); peak RSS should stay flat.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEV = REPO.parent / "shared" / "corpora" / "dev"
TOKENIZER = REPO.parent / "shared" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"


def _texts(paths: list[Path]) -> list[str]:
    texts = []
    for path in paths:
        with gzip.open(path, "rt") as handle:
            texts.extend(json.loads(line)["text"] for line in handle if line.strip())
    return texts


def run_raw(texts: list[str], tokenizer) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    return time.perf_counter() - start, tokens


def run_raw_paragraphs(texts: list[str], tokenizer) -> tuple[float, int]:
    """The fastest plain encoding we found: many short strings (paragraphs) instead of whole documents."""
    start = time.perf_counter()
    paragraphs = [p for text in texts for p in text.split("\n\n")]
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(paragraphs, add_special_tokens=False))
    return time.perf_counter() - start, tokens


def run_stage(paths: list[Path], config) -> tuple[float, int, int, dict]:
    from linkscan.pipeline.corpus import corpus_to_chunks
    from linkscan.pipeline.drops import Drops

    drops = Drops()
    start = time.perf_counter()
    tokens = chunks = 0
    for _, document_chunks in corpus_to_chunks(paths, config, drops):
        chunks += len(document_chunks)
        tokens += sum(len(c.token_ids) for c in document_chunks)
    return time.perf_counter() - start, tokens, chunks, drops.as_dict()


def _high_water_mib() -> float:
    """Peak RSS of this process image. Not ru_maxrss: Linux carries the parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_peak(paths: list[str], config_json: str) -> None:
    """Run the stage once and print the peak RSS in MiB (used by the memory measurement)."""
    from linkscan.pipeline.config import CorpusConfig

    seconds, tokens, chunks, _ = run_stage([Path(p) for p in paths], CorpusConfig.model_validate_json(config_json))
    peak_mib = _high_water_mib()
    print(json.dumps({"peak_mib": peak_mib, "seconds": seconds, "tokens": tokens, "chunks": chunks}))


def measure_memory(sample: list[Path], config, copies: list[int]) -> list[dict]:
    texts = _texts(sample)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for n in copies:
            path = Path(folder) / f"copies-{n}.jsonl.gz"
            with gzip.open(path, "wt") as handle:
                for copy in range(n):
                    for text in texts:
                        handle.write(json.dumps({"text": f"{text}\n\nCopy {copy}."}) + "\n")
            output = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--config-json", config.model_dump_json()],
                check=True, capture_output=True, text=True,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            result.update(copies=n, chars=n * sum(map(len, texts)))
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="*", default=sorted(str(p) for p in DEV.glob("*.jsonl.gz")))
    parser.add_argument("--tokenizer", default=str(TOKENIZER))
    parser.add_argument("--segmenter", default="sentencizer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-sample", nargs="*", default=[str(DEV / "rfc.jsonl.gz"), str(DEV / "scotus.jsonl.gz")])
    parser.add_argument("--copies", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_peak(args.child, args.config_json)
        return

    from linkscan.pipeline.config import CorpusConfig
    from linkscan.pipeline.tokenize import load_tokenizer

    config = CorpusConfig(tokenizer=args.tokenizer, segmenter=args.segmenter)
    paths = [Path(p) for p in args.corpus]
    tokenizer = load_tokenizer(args.tokenizer)
    texts = _texts(paths)
    chars = sum(map(len, texts))
    run_stage(paths[:1], config)  # warm up: spaCy, py3langid and the tokenizer load once per process
    raw_runs, paragraph_runs, stage_runs = [], [], []
    for _ in range(args.repeats):
        raw_seconds, raw_tokens = run_raw(texts, tokenizer)
        raw_runs.append(raw_seconds)
        paragraph_runs.append(run_raw_paragraphs(texts, tokenizer)[0])
        stage_seconds, stage_tokens, n_chunks, drops = run_stage(paths, config)
        stage_runs.append(stage_seconds)
    raw, paragraphs, stage = (statistics.median(r) for r in (raw_runs, paragraph_runs, stage_runs))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"corpus: {len(texts)} documents, {chars:,} characters; segmenter {args.segmenter}")
    print(f"stage output: {n_chunks} chunks, {stage_tokens:,} tokens, drops {drops}; raw tokens {raw_tokens:,}")
    print("| what (median of %d) | seconds | MB/s (chars) | runs (s) |" % args.repeats)
    print("|---|---:|---:|---|")
    print(f"| raw `encode_batch` | {raw:.2f} | {chars / raw / 1e6:.2f} | {', '.join(f'{r:.2f}' for r in raw_runs)} |")
    print(f"| raw `encode_batch` over paragraphs | {paragraphs:.2f} | {chars / paragraphs / 1e6:.2f} | "
          f"{', '.join(f'{r:.2f}' for r in paragraph_runs)} |")
    print(f"| corpus_to_chunks | {stage:.2f} | {chars / stage / 1e6:.2f} | {', '.join(f'{r:.2f}' for r in stage_runs)} |")
    print(f"ratio stage / raw throughput: **{raw / stage:.2f}x** (whole documents), "
          f"**{paragraphs / stage:.2f}x** (paragraphs)")
    if args.copies:
        print("| copies of the memory sample | characters | peak RSS (MiB) | stage seconds |")
        print("|---:|---:|---:|---:|")
        for row in measure_memory([Path(p) for p in args.memory_sample], config, args.copies):
            print(f"| {row['copies']} | {row['chars']:,} | {row['peak_mib']:.0f} | {row['seconds']:.1f} |")


if __name__ == "__main__":
    main()
