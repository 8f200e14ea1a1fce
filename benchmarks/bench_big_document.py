"""Peak memory and time of `linkscan generate` on one very long document, before and after a change.

The document is real text: the Project Gutenberg books of ``../shared/corpora/dev/gutenberg.jsonl.gz``
joined (and repeated, each copy headed "Part N") into one JSONL record of ``--megabytes`` MB. Each
side runs ``python -m linkscan.flows.cli generate`` on it in a fresh process under ``/usr/bin/time -v``
(offline generator, one shard): ``after`` from this checkout, ``before`` from ``--before REF``
checked out in a temporary git worktree, alternately, ``--repeats`` times, in one sitting. Reported:
peak RSS (the process's VmHWM as ``time`` reads it), wall and CPU seconds, and whether the two
sides' shards are byte-identical (sha256 of every shard file).

    .venv/bin/python benchmarks/bench_big_document.py --before 5454302            # 50 MB, 1 repeat
    .venv/bin/python benchmarks/bench_big_document.py --megabytes 20 --repeats 3  # this checkout only
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def build_document(target: Path, megabytes: float) -> int:
    """One JSONL record of at least ``megabytes`` MB of book text; returns its size in bytes."""
    with gzip.open(SHARED / "corpora" / "dev" / "gutenberg.jsonl.gz", "rt", encoding="utf-8") as handle:
        books = [json.loads(line)["text"] for line in handle]
    parts, size, copy = [], 0, 0
    while size < megabytes * 1e6:
        for book in books:
            part = f"\n\nPart {copy}.\n\n{book}"
            parts.append(part)
            size += len(part.encode())
            if size >= megabytes * 1e6:
                break
        copy += 1
    target.write_text(json.dumps({"id": "long", "title": "One long document", "text": "".join(parts)}) + "\n")
    return size


def run_side(checkout: Path, document: Path, data: Path, tokenizer: Path) -> dict:
    # Each side imports its own tree (cwd): as linkscan.flows.cli, or as flows.cli before issue 17's rename.
    module = "linkscan.flows.cli" if (checkout / "linkscan" / "__init__.py").is_file() else "flows.cli"
    command = ["/usr/bin/time", "-v", sys.executable, "-m", module, "generate", "--corpus", str(document),
               "--data", str(data), "--name", "long", "--tokenizer", str(tokenizer), "--num-shards", "1"]
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: generate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", done.stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", done.stderr).group(1))
    version = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("version "))
    # Keyed within the version folder: the version ids of two commits differ (they include the code's fingerprint).
    folder = data / "datasets" / "long" / version
    shards = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.parquet"))}
    summary = done.stderr.strip().splitlines()
    counts = next((line for line in summary if "published:" in line), "")
    return {"peak_mb": peak_kb / 1024, "wall_s": seconds, "cpu_s": user + system, "shards": shards, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--before", help="a git ref to measure side by side (checked out in a temporary worktree)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-big-"))
    sides = {"after": REPO}
    try:
        if args.before:
            worktree = scratch / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=REPO, check=True,
                           capture_output=True)
            sides = {"before": worktree, "after": REPO}
        document = scratch / "long.jsonl"
        size = build_document(document, args.megabytes)
        print(f"one document of {size / 1e6:.1f} MB ({document}); {platform.machine()}, {platform.python_version()}, "
              f"{len(sides)} side(s) x {args.repeats}")
        results: dict[str, list[dict]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, checkout in sides.items():
                data = scratch / f"data-{name}-{repeat}"
                result = run_side(checkout, document, data, Path(args.tokenizer))
                shutil.rmtree(data)
                results[name].append(result)
                print(f"  {name} run {repeat + 1}: peak {result['peak_mb']:,.0f} MB, wall {result['wall_s']:.1f} s, "
                      f"CPU {result['cpu_s']:.1f} s; {result['counts']}", flush=True)
        print("\n| side | peak RSS (MB, median) | wall s | CPU s |\n|---|---:|---:|---:|")
        for name, runs in results.items():
            print(f"| {name} | {statistics.median(r['peak_mb'] for r in runs):,.0f} | "
                  f"{statistics.median(r['wall_s'] for r in runs):.1f} | {statistics.median(r['cpu_s'] for r in runs):.1f} |")
        if "before" in results:
            same = results["before"][0]["shards"] == results["after"][0]["shards"]
            before, after = (statistics.median(r["peak_mb"] for r in results[n]) for n in ("before", "after"))
            print(f"\npeak RSS after / before: {after / before:.2f}; shards byte-identical: {same} "
                  f"({len(results['after'][0]['shards'])} files)")
    finally:
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "before")], cwd=REPO, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
