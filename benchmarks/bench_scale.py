"""Generation at scale: a corpus of a few large files through one process, threads, Dask and Ray.

The corpus is real text from ``../shared/corpora/dev`` (all four files' documents), written as
``--files`` plain JSONL files of ``--megabytes`` MB in all: the documents repeated, every copy but
a few marked with its copy number (so it is a new document), and every ``--duplicate-every``-th
document written a second time unmarked in a later file (so the corpus-wide dedupe has work).

Each mode runs the offline generation of the same config (``num_shards`` = 4, cut by content) in
a fresh process, against one Prefect server this script starts (worker processes report to it):

- ``direct``: ``linkscan.generators.stage.run_generation`` in one process (no Prefect): the baseline;
- ``direct-1thread``: the same with ``TOKENIZERS_PARALLELISM=false``: one process on one core (the
  default ``direct`` already puts the tokenizer's batch encoding on both cores);
- ``threads``: the ``generate`` flow with 2 threads;
- ``dask``: the flow on a local Dask cluster of 2 worker processes;
- ``ray``: the flow on a local Ray instance.

Reported per mode: wall seconds, MB of input per second and per core-second (``--cores``), the
peak RSS of the largest process of the mode's tree (the driver, or one worker), the ratio of its
throughput to ``direct``, and whether its shards are byte-identical to ``direct``'s. Side by side
in the same run: the corpus stage alone (``corpus_to_chunks`` on the first ``--ratio-mb`` MB) against
the raw tokenizer (``Tokenizer.encode_batch`` of the same texts), as a ratio.

    .venv/bin/python benchmarks/bench_scale.py                       # 320 MB in 4 files
    .venv/bin/python benchmarks/bench_scale.py --megabytes 60 --modes direct,dask
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

RUN = """
import json, sys
config = json.loads(sys.argv[1])
mode = sys.argv[3]
if mode == "direct":
    from linkscan.generators.config import GenerateConfig
    from linkscan.generators.stage import run_generation
    result = run_generation(GenerateConfig.model_validate(config), sys.argv[2])
    print("PATH", result.path)
else:
    from linkscan.flows.generate import generate
    from linkscan.flows.runtime import TaskRunnerConfig
    runner = {"threads": {"kind": "threads", "max_workers": 2},
              "dask": {"kind": "dask", "n_workers": 2, "processes": True},
              "ray": {"kind": "ray"}}[mode]
    result = generate(config=config, data_root=sys.argv[2], task_runner=TaskRunnerConfig.model_validate(runner))
    print("PATH", result["path"])
"""


def dev_documents() -> list[dict]:
    documents = []
    for path in sorted((SHARED / "corpora" / "dev").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            documents += [{"id": row["id"], "text": row["text"]} for row in map(json.loads, handle)]
    return documents


def build_corpus(folder: Path, megabytes: float, files: int, duplicate_every: int) -> tuple[list[Path], int]:
    """``files`` JSONL files of about ``megabytes`` MB in all; returns them and the exact copies written."""
    documents = dev_documents()
    target = megabytes * 1e6 / files
    paths = [folder / f"corpus-{i}.jsonl" for i in range(files)]
    handles = [open(path, "w", encoding="utf-8") for path in paths]
    written = [0] * files
    repeats, copy, index, exact = [], 0, 0, 0
    try:
        for file_index, handle in enumerate(handles):
            while written[file_index] < target:
                if repeats and index % duplicate_every == duplicate_every // 2:
                    row = repeats.pop(0)  # an exact copy of a document written earlier
                    exact += 1
                else:
                    base = documents[index % len(documents)]
                    row = {"id": f"{base['id']}-copy{copy}", "text": f"Copy {copy}.\n\n{base['text']}"}
                    if index % duplicate_every == 0:
                        repeats.append(row)
                line = json.dumps(row, ensure_ascii=False) + "\n"
                handle.write(line)
                written[file_index] += len(line.encode())
                index += 1
                if index % len(documents) == 0:
                    copy += 1
    finally:
        for handle in handles:
            handle.close()
    return paths, exact


def peak_rss_of_tree(process: subprocess.Popen, samples: list[int]) -> None:
    """Sample the largest RSS of any process in the tree every 0.2 s until it ends."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            samples.append(max(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)


def run_mode(mode: str, config: dict, data: Path, env: dict) -> dict:
    if mode == "direct-1thread":
        mode, env = "direct", {**env, "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", RUN, json.dumps(config), str(data), mode], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[int] = []
    sampler = threading.Thread(target=peak_rss_of_tree, args=(process, samples), daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{mode} failed ({process.returncode}):\n{output[-4000:]}")
    path = Path(next(line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("PATH ")))
    manifest = json.loads((path / "dataset.json").read_text())
    shards = {s["file"]: s["sha256"] for s in manifest["shards"]}
    return {"wall": wall, "peak_mb": max(samples, default=0) / 2**20, "shards": shards, "manifest": manifest}


def stage_vs_tokenizer(paths: list[Path], megabytes: float, tokenizer_path: str) -> dict:
    """The corpus stage alone and the raw tokenizer over the same texts (the first ``megabytes`` MB)."""
    from linkscan.pipeline.config import CorpusConfig
    from linkscan.pipeline.corpus import corpus_to_chunks
    from linkscan.pipeline.drops import Drops
    from linkscan.pipeline.tokenize import load_tokenizer

    sample = paths[0].with_name("ratio-sample.jsonl")
    texts, size = [], 0
    with open(paths[0], encoding="utf-8") as source, open(sample, "w", encoding="utf-8") as target:
        for line in source:
            if size >= megabytes * 1e6:
                break
            target.write(line)
            texts.append(json.loads(line)["text"])
            size += len(line.encode())
    tokenizer = load_tokenizer(tokenizer_path)
    started = time.perf_counter()
    tokenizer.encode_batch(texts, add_special_tokens=False)
    raw = time.perf_counter() - started
    config = CorpusConfig(tokenizer=tokenizer_path)
    started = time.perf_counter()
    for _ in corpus_to_chunks([sample], config, Drops()):
        pass
    stage = time.perf_counter() - started
    return {"megabytes": size / 1e6, "raw_s": raw, "stage_s": stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=320)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--duplicate-every", type=int, default=20)
    parser.add_argument("--modes", default="direct,direct-1thread,threads,dask,ray")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--ratio-mb", type=float, default=30)
    parser.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    parser.add_argument("--keep", help="keep the corpus and outputs in this folder")
    args = parser.parse_args()

    from linkscan.flows.server import server_env, start_server, stop_process, wait_healthy

    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    paths, exact = build_corpus(scratch, args.megabytes, args.files, args.duplicate_every)
    size = sum(p.stat().st_size for p in paths)
    print(f"corpus: {len(paths)} files, {size / 1e6:,.1f} MB, {exact} exact copies of earlier documents; "
          f"{args.cores} cores", flush=True)
    config = {"name": "scale", "corpus": [str(p) for p in paths], "num_shards": 4,
              "corpus_config": {"tokenizer": args.tokenizer}}
    home = scratch / "prefect-home"
    server, api_url = start_server(home, ui=False)
    try:
        wait_healthy(api_url, timeout=180, process=server)
        env = server_env(home, api_url)
        results = {}
        for mode in args.modes.split(","):
            results[mode] = run_mode(mode, config, scratch / f"data-{mode}", env)
            r = results[mode]
            print(f"  {mode}: {r['wall']:.1f} s, {size / 1e6 / r['wall']:.2f} MB/s, peak RSS {r['peak_mb']:,.0f} MB",
                  flush=True)
        ratio = stage_vs_tokenizer(paths, args.ratio_mb, args.tokenizer)
    finally:
        stop_process(server)
    base, single = results.get("direct"), results.get("direct-1thread")
    print("\n| mode | wall s | MB/s | MB/s per core | peak RSS of a process (MB) | vs direct | vs direct-1thread "
          "| same bytes as direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for mode, r in results.items():
        rate = size / 1e6 / r["wall"]
        versus = [f"{b['wall'] / r['wall']:.2f}x" if b else "-" for b in (base, single)]
        same = "yes" if base and r["shards"] == base["shards"] else ("-" if not base else "NO")
        print(f"| {mode} | {r['wall']:.1f} | {rate:.2f} | {rate / args.cores:.2f} | {r['peak_mb']:,.0f} | {versus[0]} "
              f"| {versus[1]} | {same} |")
    manifest = next(iter(results.values()))["manifest"]
    print(f"\nshards: {len(manifest['shard_inputs'])} ({'; '.join(manifest['shard_plan_notes']) or 'as asked'}); "
          f"documents {manifest['counts']['documents']:,}, examples {manifest['counts']['examples']:,}, "
          f"cross-shard duplicates dropped {manifest['dedupe']['cross_shard_duplicates']:,} "
          f"(duplicates in all: {manifest['drop_reasons'].get('duplicate', 0):,})")
    print(f"corpus stage vs raw tokenizer on {ratio['megabytes']:.1f} MB: stage {ratio['stage_s']:.1f} s, "
          f"raw encode_batch {ratio['raw_s']:.1f} s: stage throughput {ratio['raw_s'] / ratio['stage_s']:.2f}x the raw tokenizer's")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
