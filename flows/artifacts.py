"""Prefect artifacts for a published dataset: counts and drops, the card, a link, LLM usage."""
from __future__ import annotations

import re
from pathlib import Path


def artifact_key(*parts: str) -> str:
    """An artifact key (Prefect allows lowercase letters, digits and dashes only)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _flatten(values: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def counts_table(manifest: dict) -> list[dict]:
    """One row per shard total, count and drop reason, in that order, from a dataset manifest."""
    rows = []
    rows_per_artifact: dict[str, int] = {}
    for shard in manifest.get("shards", []):
        rows_per_artifact[shard["artifact"]] = rows_per_artifact.get(shard["artifact"], 0) + shard["rows"]
    for artifact, total in sorted(rows_per_artifact.items()):
        rows.append({"kind": "rows", "name": artifact, "value": total})
    for name, value in _flatten(manifest.get("counts") or {}):
        rows.append({"kind": "count", "name": name, "value": value})
    for name, value in _flatten(manifest.get("drop_reasons") or {}):
        rows.append({"kind": "dropped", "name": name, "value": value})
    return rows


def llm_usage_table(manifest: dict) -> list[dict]:
    """Requests, tokens and cost per LLM stage plus a total row, when the run used an LLM; else empty.

    Reads the manifest's ``llm.usage`` (``{"stages": {stage: totals}, "total": totals}``).
    """
    usage = (manifest.get("llm") or {}).get("usage") or {}
    named = [*sorted((usage.get("stages") or {}).items()), *([("total", usage["total"])] if "total" in usage else [])]
    rows = []
    for stage, totals in named:
        row = {"stage": stage, **{key: value for key, value in totals.items() if key != "failures"}}
        row["failures"] = sum((totals.get("failures") or {}).values())
        rows.append(row)
    return rows


def publish_dataset_artifacts(manifest: dict, path: Path) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    name, version = manifest["name"], manifest["version"]
    key = artifact_key("dataset", name)
    create_table_artifact(
        counts_table(manifest),
        key=f"{key}-counts",
        description=f"{name} version {version}: rows per artifact, counts, and every drop by reason",
    )
    card = path / "README.md"
    if card.is_file():
        create_markdown_artifact(card.read_text(), key=f"{key}-card", description=f"dataset card of {name} {version}")
    create_link_artifact(
        path.resolve().as_uri(),
        link_text=f"{name}/{version} shards ({path})",
        key=f"{key}-shards",
        description="the published version folder: dataset.json, README.md, data/, chunks/, links/, documents/",
    )
    usage = llm_usage_table(manifest)
    if usage:
        create_table_artifact(usage, key=f"{key}-llm-usage", description=f"LLM tokens and cost of {name} {version}")
