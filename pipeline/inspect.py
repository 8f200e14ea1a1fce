"""Statistics and human-readable rendering of a published dataset (what `linkscan inspect` shows)."""
from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from linkscan.pipeline.store import Dataset, latest_version, list_versions, partial_versions

# Link distances are bucketed on a roughly logarithmic scale (units apart): 0-9, 10-19, 20-49,
# 50-99, 100-199, >=200. The one definition, for inspect, the link graph and the manifest.
DISTANCE_BINS = (10, 20, 50, 100, 200)
DISTANCE_BUCKETS = (*(f"{low}-{high - 1}" for low, high in zip((0, *DISTANCE_BINS[:-1]), DISTANCE_BINS)),
                    f">={DISTANCE_BINS[-1]}")


def distance_bucket(distance: int) -> str:
    low = 0
    for high in DISTANCE_BINS:
        if distance < high:
            return f"{low}-{high - 1}"
        low = high
    return DISTANCE_BUCKETS[-1]


def ordered_buckets(histogram: dict) -> dict:
    """A distance histogram with its buckets in distance order."""
    return {bucket: histogram[bucket] for bucket in DISTANCE_BUCKETS if bucket in histogram}


def _summary(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "mean": round(sum(ordered) / len(ordered), 3),
        "max": ordered[-1],
    }


def label_stats(dataset: Dataset) -> dict:
    """Positives per example, units per example, tokens, methods and the link distance histogram."""
    positives_per_example: list[int] = []
    units_per_example: list[int] = []
    tokens_per_example: list[int] = []
    distances: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    columns = ["positives", "sentence_ends", "link_distance", "method", "n_tokens"]
    for batch in dataset.iter_batches("examples", columns=columns, batch_size=1024):
        positives_per_example += pc.list_value_length(batch.column("positives")).to_pylist()
        units_per_example += pc.list_value_length(batch.column("sentence_ends")).to_pylist()
        tokens_per_example += batch.column("n_tokens").to_pylist()
        methods.update(batch.column("method").to_pylist())
        distances.update(distance_bucket(d) for d in batch.column("link_distance").to_pylist() if d is not None)
    positive_share = (
        round(sum(positives_per_example) / sum(units_per_example), 5) if sum(units_per_example) else None
    )
    return {
        "examples": len(positives_per_example),
        "methods": dict(sorted(methods.items())),
        "positives_per_example": _summary(positives_per_example),
        "units_per_example": _summary(units_per_example),
        "tokens_per_example": _summary(tokens_per_example),
        "positive_unit_share": positive_share,
        "link_distance_histogram": ordered_buckets(distances),
    }


def dataset_stats(dataset: Dataset) -> dict:
    """Everything `inspect --json` prints: identity, versions, counts, drop reasons and label stats."""
    manifest = dataset.manifest
    data_root = dataset.path.parent.parent.parent
    return {
        "name": dataset.name,
        "version": dataset.version,
        "path": str(dataset.path),
        "versions": list_versions(data_root, dataset.name),
        "latest": latest_version(data_root, dataset.name),
        "partial_versions": partial_versions(data_root, dataset.name),
        "complete": dataset.complete,
        "pending_chunks": manifest.get("pending_chunks") or {},
        "rows": {artifact: dataset.num_rows(artifact) for artifact in ("examples", "chunks", "links", "documents")},
        "counts": manifest.get("counts", {}),
        "drop_reasons": manifest.get("drop_reasons", {}),
        "labels": label_stats(dataset),
    }


def partial_note(stats: dict) -> str | None:
    """What to know about a partial version (None for a complete one), from ``dataset_stats``."""
    if stats["complete"]:
        return None
    pending = stats["pending_chunks"]
    complete = [version for version in stats["versions"] if version not in stats["partial_versions"]]
    if stats["latest"]:
        latest = f"LATEST names the complete {stats['latest']}"
    elif complete:
        latest = (f"LATEST names no complete version (complete: {', '.join(complete)}; rerun the generate command "
                  "of one, which repairs LATEST)")
    else:
        latest = "there is no complete version yet (no LATEST)"
    return (f"PARTIAL VERSION (complete: false): {sum(pending.values()):,} chunks were still pending when it was "
            f"published with --allow-partial ({', '.join(f'{k}: {v:,}' for k, v in pending.items())}); "
            f"training refuses it without --allow-partial, and {latest}")


def sample_examples(dataset: Dataset, n: int) -> list[dict]:
    """The first n examples (in shard order), as plain dicts."""
    rows: list[dict] = []
    columns = ["example_id", "method", "question", "positives", "anchor", "link_target", "link_distance", "sentences"]
    for batch in dataset.iter_batches("examples", columns=columns, batch_size=max(n, 1)):
        rows += pa.Table.from_batches([batch]).to_pylist()
        if len(rows) >= n:
            break
    return rows[:n]


def render_example(row: dict, context: int = 1, width: int = 160) -> str:
    """The question, then the chunk's units around the positives; positives marked with '>>'.

    Units far from any positive are elided ("... 37 units ...") so a 10k-token chunk stays readable.
    """
    sentences: list[str] = row["sentences"]
    positives = set(row["positives"])
    keep = {i for p in positives for i in range(p - context, p + context + 1) if 0 <= i < len(sentences)}
    header = f"[{row['method']}] {row['example_id']}"
    if row.get("link_distance") is not None:
        header += f"  link distance {row['link_distance']} units"
    lines = [header, f"Q: {row['question']}", ""]
    skipped = 0
    for i, sentence in enumerate(sentences):
        if i not in keep:
            skipped += 1
            continue
        if skipped:
            lines.append(f"       ... {skipped} units ...")
            skipped = 0
        marker = ">>" if i in positives else "  "
        text = " ".join(sentence.split())
        if len(text) > width:
            text = text[: width - 3] + "..."
        lines.append(f"{marker} {i:4d}  {text}")
    if skipped:
        lines.append(f"       ... {skipped} units ...")
    return "\n".join(lines)
