"""Each benchmark's results, written as soon as it finishes, and read back when a run resumes.

    <out>/benchmarks/<name>/rows.jsonl            its per-question rows
    <out>/benchmarks/<name>/predictions.parquet   its predictions (schema-validated)
    <out>/benchmarks/<name>/summary.json          run id, input fingerprint, evidence mapping, skips,
                                                  retrieval timings; written last: it marks the
                                                  benchmark finished

Every file is written under a dot-prefixed name and renamed into place, so a killed run leaves a
benchmark either finished or absent. A finished benchmark is reused only when its summary names
the same run id (the same resolved config) and the same input fingerprint (the sha256 of its files).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from linkscan.pipeline.layout import atomic_path

from linkscan.schemas import validate_table

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class OutputFolderError(ValueError):
    """The output folder holds another run's results; the message names it and the fix."""


@dataclass
class BenchmarkResult:
    name: str
    rows: list[dict]
    predictions: pa.Table
    evidence: dict  # evidence mapping counts (spans, matched, unmatched, ...)
    skipped_questions: dict[str, int]  # reason -> questions left without some or all metrics
    retrieval: dict[str, dict]  # retriever -> seconds, documents, units, tokens, questions
    # LLM requests given up on for a transient reason: the benchmark is not finished (a rerun retries them)
    waiting: int = 0
    resumed: bool = False


def benchmark_dir(out_dir: Path, name: str) -> Path:
    """The benchmark's folder; names that are not plain file names get a hash suffix."""
    if _SAFE_NAME.fullmatch(name):
        return Path(out_dir) / "benchmarks" / name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return Path(out_dir) / "benchmarks" / f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def input_fingerprint(files: Sequence[str]) -> str:
    """The sha256 over the sha256 of each file a benchmark was read from."""
    from linkscan.pipeline.store import file_sha256

    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{Path(path).name}:{file_sha256(Path(path))}\n".encode())
    return digest.hexdigest()


def _run_ids(out_dir: Path) -> dict[str, str]:
    """Run id by file, for every summary in the folder (the final config.json and each benchmark's)."""
    found = {}
    for path in [Path(out_dir) / "config.json", *sorted(Path(out_dir).glob("benchmarks/*/summary.json"))]:
        try:
            found[str(path)] = json.loads(path.read_text(encoding="utf-8"))["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # absent or unreadable: nothing to protect
    return found


def claim_out_dir(out_dir: Path, run_id: str) -> None:
    """Refuse to mix two runs' results in one folder (a resumed run must have the same config)."""
    for path, other in _run_ids(out_dir).items():
        if other != run_id:
            raise OutputFolderError(
                f"{out_dir}: holds results of run {other} ({path}), made with other options than this run ({run_id}); "
                "use another --out, or remove that folder to start over"
            )


def _write_atomically(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_benchmark(out_dir: Path, run_id: str, fingerprint: str, result: BenchmarkResult) -> Path:
    """Write a finished benchmark's rows, predictions and summary (the summary last)."""
    folder = benchmark_dir(out_dir, result.name)
    folder.mkdir(parents=True, exist_ok=True)
    validate_table(result.predictions, "predictions", source=str(folder / "predictions.parquet"))

    def rows(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in result.rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    _write_atomically(folder / "rows.jsonl", rows)
    _write_atomically(folder / "predictions.parquet", lambda tmp: pq.write_table(result.predictions, tmp, compression="zstd"))
    summary = {
        "run_id": run_id, "benchmark": result.name, "input_fingerprint": fingerprint, "evidence": result.evidence,
        "skipped_questions": result.skipped_questions, "retrieval": result.retrieval,
    }
    _write_atomically(folder / "summary.json",
                      lambda tmp: tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
    return folder


def read_benchmark(out_dir: Path, name: str, run_id: str, fingerprint: str) -> BenchmarkResult | None:
    """A benchmark finished earlier by the same run on the same input, else None."""
    folder = benchmark_dir(out_dir, name)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if summary.get("run_id") != run_id or summary.get("input_fingerprint") != fingerprint:
        return None
    with open(folder / "rows.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    predictions = pq.read_table(folder / "predictions.parquet")
    validate_table(predictions, "predictions", source=str(folder / "predictions.parquet"))
    return BenchmarkResult(
        name=name, rows=rows, predictions=predictions, evidence=summary["evidence"],
        skipped_questions=summary["skipped_questions"], retrieval=summary["retrieval"], resumed=True,
    )


def finished_benchmarks(out_dir: Path, run_id: str) -> list[str]:
    """Names of the benchmarks this run has finished in the folder so far."""
    names = []
    for path in sorted(Path(out_dir).glob("benchmarks/*/summary.json")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if summary.get("run_id") == run_id:
            names.append(summary.get("benchmark", path.parent.name))
    return names
