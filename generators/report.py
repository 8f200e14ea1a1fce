"""What a generation run reports: the manifest's statistics, aggregated over shards, and the card.

``manifest_fields`` sums the shards' statistics (counts, drop reasons, link-graph diagnostics,
label statistics, LLM usage) into the fields the store writes to ``dataset.json``;
``render_card`` writes the dataset card (README.md of a version) from them; ``why_empty`` says in
one line why a run gave no examples.
"""
from __future__ import annotations

import json
import logging
from collections import Counter

from linkscan.generators.config import GenerateConfig
from linkscan.pipeline.inspect import distance_bucket, ordered_buckets

log = logging.getLogger("linkscan")


def _sum_counters(parts: list[dict]) -> dict:
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))


def manifest_fields(config: GenerateConfig, shard_inputs, shard_notes, shard_stats: list[dict]) -> dict:
    """The manifest fields from every shard's statistics: counts, drop reasons, diagnostics, labels."""
    counts = _sum_counters([s["counts"] for s in shard_stats])
    link_distances = {int(k): v for k, v in _sum_counters([s["link_distances"] for s in shard_stats]).items()}
    positives = {int(k): v for k, v in _sum_counters([s["positives_histogram"] for s in shard_stats]).items()}
    examples = counts.get("examples", 0)
    anchors = counts.get("anchors_tried", 0)
    graph_units = counts.get("graph_units", 0)
    diagnostics = {
        "link_graph": {
            "units": graph_units,
            "edges": counts.get("graph_edges", 0),
            "edges_per_unit": round(counts.get("graph_edges", 0) / graph_units, 4) if graph_units else 0.0,
            "linked_unit_share": round(counts.get("graph_linked_units", 0) / graph_units, 4) if graph_units else 0.0,
            "distance_histogram": ordered_buckets(_sum_counters([s["edge_distance_histogram"] for s in shard_stats])),
            "documents_without_links": counts.get("documents_without_links", 0),
            "anchors_tried": anchors,
            "anchors_without_usable_link": counts.get("anchors_without_link", 0),
            # Passed over before anything was asked: no unit far enough, or none sharing a rare
            # term with the anchor (the LLM back end's shortlist was empty).
            "anchors_skipped": counts.get("anchors_skipped", 0),
            "share_of_anchors_without_usable_link": (
                round(counts.get("anchors_without_link", 0) / anchors, 4) if anchors else 0.0
            ),
        }
    }
    if diagnostics["link_graph"]["edges"] == 0 and counts.get("chunks", 0) and config.method == "link":
        log.warning("%s: the link graph has no edges; check the generator settings", config.name)
    labels = {
        "examples": examples,
        "positives_per_example_histogram": {str(k): v for k, v in sorted(positives.items())},
        "mean_positives_per_example": round(counts.get("positive_units", 0) / examples, 3) if examples else None,
        "mean_units_per_example": round(counts.get("units_in_examples", 0) / examples, 3) if examples else None,
        "positive_unit_share": (
            round(counts.get("positive_units", 0) / counts["units_in_examples"], 5)
            if counts.get("units_in_examples") else None
        ),
        "mean_tokens_per_example": round(counts.get("example_tokens", 0) / examples, 1) if examples else None,
        "link_distance_histogram": ordered_buckets(
            _sum_counters([{distance_bucket(d): n} for d, n in link_distances.items()])
        ),
        "min_link_distance": min(link_distances) if link_distances else None,
    }
    llm_parts = [s["llm"] for s in shard_stats if s.get("llm")]
    llm = None
    if llm_parts:
        from linkscan.generators.llm.backend import merge_llm_stats

        llm = merge_llm_stats(llm_parts)
    pending = _sum_counters([s.get("pending_chunks") or {} for s in shard_stats])
    return {
        # False only for a version published with allow_partial while chunks still waited for the
        # back end; nothing downstream trains on such a version unless asked to.
        "complete": not pending,
        "pending_chunks": pending,
        "method": config.method,
        "generator": config.generator if config.generator == "offline" else f"llm:{config.llm.model}",
        "prompt_version": _prompt_version(config),
        "tokenizer": config.corpus_config.tokenizer,
        "seed": config.seed,
        "counts": {
            "documents": counts.get("documents", 0),
            "document_chars": counts.get("document_chars", 0),
            "chunks": counts.get("chunks", 0),
            "links": counts.get("links", 0),
            "examples": examples,
        },
        "drop_reasons": _sum_counters([s["drop_reasons"] for s in shard_stats]),
        # Every failed attempt (anchor, passage or pair) by its reason; a chunk's drop reason above
        # is only the reason of its last attempt.
        "attempt_reasons": _sum_counters([s.get("attempt_reasons") or {} for s in shard_stats]),
        "diagnostics": diagnostics,
        "labels": labels,
        "sources": _sum_counters([s["sources"] for s in shard_stats]),
        "dedupe": {"scope": "corpus", "cross_shard_duplicates": counts.get("cross_shard_duplicates", 0)},
        "shard_inputs": [[piece.describe() for piece in group] for group in shard_inputs],
        "shard_plan_notes": list(shard_notes),
        "llm": llm,
    }


def _prompt_version(config: GenerateConfig) -> str:
    if config.generator == "offline":
        from linkscan.generators.offline import PROMPT_VERSION

        return PROMPT_VERSION
    from linkscan.generators.llm.prompts import PROMPT_VERSION as LLM_PROMPT_VERSION

    return LLM_PROMPT_VERSION


def why_empty(fields: dict) -> str:
    """One line on why a run gave no examples, with the top drop reasons."""
    counts, drops = fields["counts"], fields["drop_reasons"]

    def top(reasons: dict) -> str:
        ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
        return ", ".join(f"{reason}: {n}" for reason, n in ranked)

    corpus_drops = {r: n for r, n in drops.items() if not r.startswith("no_example:")}
    if not counts["documents"]:
        if not corpus_drops:
            return "0 examples: no documents were read from the inputs (check --corpus and text_field)"
        return f"0 examples: every document was dropped ({top(corpus_drops)})"
    chunk_drops = {r.removeprefix("no_example:"): n for r, n in drops.items() if r.startswith("no_example:")}
    return (f"0 examples: none of the {counts['chunks']} chunks of {counts['documents']} documents gave one "
            f"({top(chunk_drops) or 'no reason recorded'})")


# -- the dataset card -----------------------------------------------------------------------------
_METHODS = {
    "link": (
        "link-based (the paper's method): a random anchor of consecutive units, links from it to the units "
        "of a window around it that are far enough away, the strongest link kept, a question that needs "
        "both ends of the link, and evidence picked next to both ends (kept only when it holds a unit of "
        "the anchor and one of the far end, and is a choice among the candidates, not most of them)"
    ),
    "chunk": "chunk-based (ablation): a question about one random passage, with evidence from around it",
    "pair": "pair-based (ablation): a question needing two random passages far apart, with evidence from both",
}


def _table(rows: dict, key: str, value: str) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = [f"| {key} | {value} |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |" for k, v in rows.items()]
    return lines


def render_card(name: str, version: str, config: dict, fingerprints: dict, fields: dict) -> str:
    """The card's Markdown from the resolved config, the input fingerprints and the manifest fields."""
    counts = fields.get("counts", {})
    labels = fields.get("labels", {})
    graph = fields.get("diagnostics", {}).get("link_graph", {})
    method = fields.get("method", config.get("method", "link"))
    pending = fields.get("pending_chunks") or {}
    partial = [] if fields.get("complete", True) else [
        f"**Partial version**: {sum(pending.values()):,} chunk(s) still waited for the LLM when it was "
        f"published with allow_partial ({', '.join(f'{k}: {v:,}' for k, v in pending.items())}). "
        "Training does not use it unless asked to; rerun without allow_partial for the complete version.",
        "",
    ]
    lines = [
        f"# {name} (version {version})",
        "",
        *partial,
        "Synthetic training data for single-pass long-document retrievers (linkscan). Each example is "
        "a question followed by one whole chunk of a document; the units (sentences merged to at least "
        f"{config.get('corpus_config', {}).get('min_unit_tokens', 20)} tokens) that answer it are labelled 1, "
        "all others 0.",
        "",
        "## How it was made",
        "",
        f"- method: {_METHODS.get(method, method)}",
        f"- generator: `{fields.get('generator')}` (prompt version `{fields.get('prompt_version')}`)",
        f"- tokenizer: `{fields.get('tokenizer')}`; chunks of at most "
        f"{config.get('corpus_config', {}).get('chunk_tokens')} tokens",
        f"- seed: {fields.get('seed')}; the full resolved config is in `dataset.json` under `config`",
        "",
        "Model input: `question_ids` (the question plus a newline) followed by `token_ids`; the label of "
        "unit i sits at position `len(question_ids) + sentence_ends[i]`; `positives` lists the units "
        "labelled 1.",
        "",
        "## Counts",
        "",
        *_table({k: v for k, v in counts.items()}, "what", "count"),
        "",
        "## Dropped, by reason",
        "",
        "Documents and chunks dropped while reading and chunking, and (`no_example:<reason>`) chunks that "
        "gave no example, each counted once under the reason of its last attempt.",
        "",
        *_table(fields.get("drop_reasons", {}), "reason", "count"),
        "",
        "Every failed attempt (an anchor, passage or pair tried and given up on), by reason:",
        "",
        *_table(fields.get("attempt_reasons", {}), "reason", "attempts"),
        "",
        "## Labels",
        "",
        f"- mean positives per example: {labels.get('mean_positives_per_example')}; "
        f"mean units per example: {labels.get('mean_units_per_example')}; "
        f"share of units labelled 1: {labels.get('positive_unit_share')}",
        f"- mean tokens per example (question + chunk): {labels.get('mean_tokens_per_example')}",
        f"- smallest link distance (units between anchor and link target): {labels.get('min_link_distance')}",
        "",
        "Positives per example:",
        "",
        *_table(labels.get("positives_per_example_histogram", {}), "positives", "examples"),
        "",
        "Link distance of the examples (units):",
        "",
        *_table(labels.get("link_distance_histogram", {}), "distance", "examples"),
        "",
        "## Link graph",
        "",
        *(["**No links were found: no example could be made by the link method. Check the generator "
           "settings (for the offline one, `offline.min_link_score`) and the corpus.**", ""]
          if not graph.get("edges") and method == "link" else []),
        f"- {graph.get('edges', 0):,} edges over {graph.get('units', 0):,} units "
        f"({graph.get('edges_per_unit', 0)} edges per unit; {graph.get('linked_unit_share', 0)} of units linked)",
        f"- anchors tried: {graph.get('anchors_tried', 0):,} (and {graph.get('anchors_skipped', 0):,} passed "
        "over before asking: nothing far enough or nothing shared); share without a usable link: "
        f"{graph.get('share_of_anchors_without_usable_link', 0)}; documents without any link: "
        f"{graph.get('documents_without_links', 0):,}",
        "",
        *_table(graph.get("distance_histogram", {}), "edge distance", "edges"),
        "",
        "## Sources",
        "",
        "Documents per input file (see each source's own licence; the input fingerprints are in "
        "`dataset.json`):",
        "",
        *_table(fields.get("sources", {}), "input", "documents"),
        "",
    ]
    if fields.get("llm"):
        usage = fields["llm"]
        lines += ["## LLM usage", "", "```json", json.dumps(usage, indent=2, sort_keys=True), "```", ""]
    lines += [
        "## Files",
        "",
        "- `data/train-*.parquet`: the examples (one row per example, self-contained)",
        "- `chunks/chunks-*.parquet`: every chunk, including those that gave no example",
        "- `links/links-*.parquet`: the link graph's edges (`src`, `dst` are unit indices inside the chunk)",
        "- `dataset.json`: the manifest (config, inputs, counts, shards with sha256)",
        "",
        "## How to load",
        "",
        "```python",
        "import pyarrow.dataset as ds",
        'table = ds.dataset("data", format="parquet").to_table()',
        "",
        "import duckdb",
        "duckdb.sql(\"SELECT question, positives FROM 'data/train-*.parquet' LIMIT 5\")",
        "",
        "import polars as pl",
        'frame = pl.read_parquet("data/train-*.parquet")',
        "",
        "from datasets import load_dataset",
        'dataset = load_dataset("parquet", data_files="data/train-*.parquet", split="train")',
        "```",
        "",
        f"Paths are relative to this folder (`<data>/datasets/{name}/{version}/`); "
        f"`linkscan inspect {name}` shows counts and rendered samples.",
        "",
    ]
    return "\n".join(lines)
