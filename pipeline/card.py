"""The dataset card: the README.md written into every published version.

It says what the data is, how it was made (method, generator, config), how much of it there is,
what was dropped and why, the label statistics, where the text came from, and how to load it with
pyarrow, DuckDB, polars and Hugging Face ``datasets``.
"""
from __future__ import annotations

import json

_METHODS = {
    "link": (
        "link-based (the paper's method): a random anchor of consecutive units, links from it to units "
        "of a window around it, the longest-range link kept when it is far enough away, a question that "
        "needs both ends of the link, and evidence picked next to both ends (kept only when it covers both)"
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
        f"- anchors tried: {graph.get('anchors_tried', 0):,}; share without a usable link: "
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
