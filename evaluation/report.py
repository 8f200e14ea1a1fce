"""Evaluation reports: aggregated tables (CSV, JSON, Markdown) with bootstrap CIs, and PNG plots.

Input is the list of per-question rows written by :mod:`linkscan.evaluation.run` (one row per question and
retriever). Every averaged metric comes with a 95% bootstrap confidence interval over questions and
the number of questions behind it (``<metric>_n``), which the Markdown tables show per metric group.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from linkscan.evaluation.metrics import bootstrap_ci

# Document-length buckets in tokens (upper bounds); the last is open.
LENGTH_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<8k", 8_000), ("8k-16k", 16_000), ("16k-32k", 32_000), ("32k-64k", 64_000),
    ("64k-128k", 128_000), ("128k-256k", 256_000), (">=256k", 2**62),
)


def length_bucket(n_tokens: int) -> str:
    for name, upper in LENGTH_BUCKETS:
        if n_tokens < upper:
            return name
    return LENGTH_BUCKETS[-1][0]


METRIC_FAMILIES = ("recall", "hit", "ndcg", "mrr", "answer_containment", "llm_correct", "token_f1")
# Metrics against gold units: all of them apply to the same questions (those with a gold unit).
RETRIEVAL_FAMILIES = ("recall", "hit", "ndcg", "mrr")
METRIC_NOTES = (
    "recall@k: the share of a question's gold units in the top k, at most k/|gold| (with 3 gold units "
    "even the oracle's recall@1 is 0.33); hit@k: at least one gold unit in the top k (1 for a perfect ranking at any k)",
    "n (...): the questions behind the means of that group of columns (in macro rows: the benchmarks)",
    "random (expected): the exact expectation of a uniformly random ranking, beside the seeded single draw `random`",
)


def _is_metric(key: str) -> bool:
    family, at, k = key.partition("@")
    return family in METRIC_FAMILIES and (k.isdigit() if at else True)


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """The averaged metrics present in the rows, in a fixed order."""
    order = []
    for row in rows:
        for key in row:
            if key not in order and _is_metric(key):
                order.append(key)

    def sort_key(name: str) -> tuple:
        family, _, k = name.partition("@")
        return METRIC_FAMILIES.index(family), int(k) if k else 0

    return sorted(order, key=sort_key)


def metric_group(metric: str) -> str:
    """The columns that share one n: the retrieval metrics, else the metric itself."""
    return "retrieval" if metric.partition("@")[0] in RETRIEVAL_FAMILIES else metric


def _value(row: dict, metric: str) -> float | None:
    value = row.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def aggregate(
    rows: Sequence[dict],
    group_by: Sequence[str],
    metrics: Sequence[str],
    *,
    samples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """One output row per group: the group keys, question count, and mean/ci_low/ci_high per metric
    (over the questions where the metric applies; ``<metric>_n`` says how many, None where none)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in group_by), []).append(row)
    table = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        members = groups[key]
        out = dict(zip(group_by, key))
        out["questions"] = len(members)
        for metric in metrics:
            estimate = bootstrap_ci([v for v in (_value(r, metric) for r in members) if v is not None], samples=samples, seed=seed)
            applies = estimate.n > 0  # None (not NaN) where the metric does not apply: the tables stay valid JSON
            out[metric] = estimate.mean if applies else None
            out[f"{metric}_ci_low"] = estimate.low if applies else None
            out[f"{metric}_ci_high"] = estimate.high if applies else None
            out[f"{metric}_n"] = estimate.n
        table.append(out)
    return table


def macro_average(table: Sequence[dict], group_key: str, metrics: Sequence[str]) -> list[dict]:
    """The paper's headline: the unweighted mean over benchmarks, per retriever (no CI: a mean of means).

    A metric is averaged over the benchmarks where it applies for that retriever, which may differ
    between retrievers; ``<metric>_n`` counts them and ``<metric>_benchmarks`` names them.
    """
    by_retriever: dict[str, list[dict]] = {}
    for row in table:
        by_retriever.setdefault(row["retriever"], []).append(row)
    out = []
    for retriever, members in sorted(by_retriever.items()):
        row = {group_key: "macro average", "retriever": retriever, "questions": sum(m["questions"] for m in members)}
        for metric in metrics:
            used = [m for m in members if m[f"{metric}_n"] > 0]
            row[metric] = sum(m[metric] for m in used) / len(used) if used else None
            row[f"{metric}_n"] = len(used)
            row[f"{metric}_benchmarks"] = [m[group_key] for m in used]
        out.append(row)
    return out


def macro_note(macro_rows: Sequence[dict], group_key: str, metrics: Sequence[str]) -> str:
    """Which benchmarks each macro row averages, per retriever and metric group, and a warning
    when retrievers are averaged over different sets."""
    lines, sets = [], set()
    for row in macro_rows:
        parts = []
        for group in dict.fromkeys(metric_group(m) for m in metrics):
            first = next(m for m in metrics if metric_group(m) == group)
            names = row[f"{first}_benchmarks"]
            if names:
                parts.append(f"{group} over {', '.join(names)}")
                sets.add((group, tuple(names)))
        lines.append(f"- {row['retriever']}: " + ("; ".join(parts) or "no metric applies"))
    groups = {group for group, _ in sets}
    caution = ("The retrievers are averaged over different benchmark sets: compare their macro rows per group only "
               "where the lists agree." if len(sets) > len(groups) else "Every retriever is averaged over the same benchmarks.")
    return "Macro average rows: the unweighted mean over benchmarks where the metric applies. " + caution + "\n\n" + "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _n_cell(row: dict, metric: str) -> str:
    n = row.get(f"{metric}_n", 0)
    return f"{n} benchmarks" if f"{metric}_benchmarks" in row else str(n)


def to_markdown(table: Sequence[dict], keys: Sequence[str], metrics: Sequence[str], title: str, with_ci: bool = True) -> str:
    """A Markdown table: each metric as ``mean [low, high]`` (or the mean alone without ``with_ci``;
    blank where it does not apply), each group of metrics after an ``n (group)`` column holding the
    number of questions behind its means."""
    groups: dict[str, list[str]] = {}
    for metric in metrics:
        groups.setdefault(metric_group(metric), []).append(metric)
    header = list(keys)
    for group, members in groups.items():
        header += [f"n ({group})", *members]
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [_fmt(row[k]) for k in keys]
        for members in groups.values():
            cells.append(_n_cell(row, members[0]))
            for metric in members:
                mean = row.get(metric)
                if mean is None:
                    cells.append("")
                elif with_ci and row.get(f"{metric}_ci_low") is not None:
                    cells.append(f"{mean:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]")
                else:
                    cells.append(f"{mean:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# What each question-level skip reason means for the metrics.
SKIP_MEANINGS = {
    "empty_document": "the document is empty or whitespace only: no metric at all",
    "evidence_matched_no_unit": "no gold evidence span matched a unit: no retrieval metrics",
    "oracle_without_gold_units": "no gold unit, so no oracle row (other retrievers keep their other metrics)",
    "llm_answer_failed": "the LLM answer request failed: no llm_correct",
    "llm_judge_failed": "the LLM judge request failed: no llm_correct",
    "judge_unparsed": "the judge gave no YES/NO: no llm_correct",
}


def not_measured_markdown(skipped_benchmarks: Sequence[dict], skipped_questions: dict[str, dict[str, int]]) -> str:
    """What the run could not measure: skipped benchmarks with their reason, and per benchmark the
    questions left without metrics, by reason."""
    lines = ["## Not measured", ""]
    if not skipped_benchmarks and not any(skipped_questions.values()):
        return "\n".join(lines + ["Every benchmark and question was evaluated.", ""])
    if skipped_benchmarks:
        lines += ["Benchmarks skipped:", "", "| benchmark | reason | detail |", "|---|---|---|"]
        lines += [f"| {s['benchmark']} | {s['reason']} | {s['detail']} |" for s in skipped_benchmarks]
        lines.append("")
    if any(skipped_questions.values()):
        lines += ["Questions without some or all metrics:", "", "| benchmark | reason | questions | meaning |", "|---|---|---|---|"]
        lines += [f"| {name} | {reason} | {n} | {SKIP_MEANINGS.get(reason, '')} |" for name, reasons in sorted(skipped_questions.items())
                  for reason, n in sorted(reasons.items())]
        lines.append("")
    return "\n".join(lines)


def _csv_cell(value: object) -> object:
    if isinstance(value, float):
        return _fmt(value)
    if isinstance(value, (list, tuple)):  # the benchmarks a macro row averages
        return ";".join(str(v) for v in value)
    return value


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _json_safe(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(_json_safe(value), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tables(out_dir: Path, rows: Sequence[dict], *, samples: int = 1000, seed: int = 0,
                 skipped_benchmarks: Sequence[dict] = (), skipped_questions: dict[str, dict[str, int]] | None = None,
                 ) -> dict[str, list[dict]]:
    """Per-benchmark (plus macro average), per-category and per-length-bucket tables in three formats,
    and ``report.md`` holding all of them and what was not measured. Returns the tables by name."""
    out_dir = Path(out_dir)
    metrics = metric_columns(rows)
    per_benchmark = aggregate(rows, ["benchmark", "retriever"], metrics, samples=samples, seed=seed)
    macro = macro_average(per_benchmark, "benchmark", metrics)
    tables = {
        "per_benchmark": per_benchmark + macro,
        "per_category": aggregate(rows, ["benchmark", "category", "retriever"], metrics, samples=samples, seed=seed),
        "per_length": sorted(
            aggregate(rows, ["length_bucket", "retriever"], metrics, samples=samples, seed=seed),
            key=lambda r: ([b for b, _ in LENGTH_BUCKETS].index(r["length_bucket"]), r["retriever"]),
        ),
    }
    keys = {"per_benchmark": ["benchmark", "retriever"], "per_category": ["benchmark", "category", "retriever"], "per_length": ["length_bucket", "retriever"]}
    titles = {"per_benchmark": "Per benchmark", "per_category": "Per category", "per_length": "Per document length (tokens)"}
    markdown = ["# Evaluation report", "", "Means over questions with 95% bootstrap intervals; blank: the metric does not apply.", ""]
    markdown += [f"- {note}" for note in METRIC_NOTES] + [""]
    markdown.append(not_measured_markdown(skipped_benchmarks, skipped_questions or {}))
    for name, table in tables.items():
        write_csv(out_dir / f"{name}.csv", table)
        write_json(out_dir / f"{name}.json", table)
        md = to_markdown(table, keys[name], metrics, titles[name])
        if name == "per_benchmark" and macro:
            md += "\n" + macro_note(macro, "benchmark", metrics)
        (out_dir / f"{name}.md").write_text(md, encoding="utf-8")
        markdown.append(md)
    (out_dir / "report.md").write_text("\n".join(markdown), encoding="utf-8")
    return tables


def plot_recall_curves(path: Path, rows: Sequence[dict], ks: Sequence[int]) -> bool:
    """Mean recall@k against k, one line per retriever, over the questions with gold evidence.
    Returns False (and writes nothing) when no question has gold evidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_retriever: dict[str, list[dict]] = {}
    for row in rows:
        if row.get(f"recall@{ks[0]}") is not None:
            by_retriever.setdefault(row["retriever"], []).append(row)
    if not by_retriever:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for retriever, members in sorted(by_retriever.items()):
        means = [sum(r[f"recall@{k}"] for r in members) / len(members) for k in ks]
        ax.plot(list(ks), means, marker="o", label=f"{retriever} (n={len(members)})")
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_xlabel("k (units)")
    ax.set_ylabel("recall@k of gold evidence units")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Recall@k on benchmarks with gold evidence")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_by_length(path: Path, per_length: Sequence[dict], metric: str) -> list[str]:
    """A metric by document-length bucket, one line per retriever, each point labelled with the
    number of questions behind it. Returns those labels as drawn (``retriever bucket n=N``), or
    an empty list (and writes nothing) when the metric is absent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b for b, _ in LENGTH_BUCKETS]
    by_retriever: dict[str, list[dict]] = {}
    for row in per_length:
        if row.get(f"{metric}_n"):
            by_retriever.setdefault(row["retriever"], []).append(row)
    if not by_retriever:
        return []
    labels = []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for position, (retriever, members) in enumerate(sorted(by_retriever.items())):
        members = sorted(members, key=lambda r: names.index(r["length_bucket"]))
        dodge = (position - (len(by_retriever) - 1) / 2) * 0.08  # keep error bars apart
        x = [names.index(r["length_bucket"]) + dodge for r in members]
        y = [r[metric] for r in members]
        low = [r[metric] - r[f"{metric}_ci_low"] for r in members]
        high = [r[f"{metric}_ci_high"] - r[metric] for r in members]
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, label=retriever)
        for x_point, y_point, row in zip(x, y, members):  # a mean of 3 questions must not read like one of 300
            ax.annotate(f"n={row[f'{metric}_n']}", (x_point, y_point), textcoords="offset points", xytext=(4, 4), fontsize=7)
            labels.append(f"{retriever} {row['length_bucket']} n={row[f'{metric}_n']}")
    used = sorted({names.index(r["length_bucket"]) for rs in by_retriever.values() for r in rs})
    ax.set_xticks(used, [names[i] for i in used])
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric} by document length (95% bootstrap CI, n questions per point)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return labels


def write_plots(out_dir: Path, rows: Sequence[dict], per_length: Sequence[dict], ks: Sequence[int], k: int) -> list[str]:
    """recall_at_k.png and by_length_<metric>.png for the metrics that apply; returns the file names."""
    out_dir = Path(out_dir)
    written = []
    if plot_recall_curves(out_dir / "recall_at_k.png", rows, ks):
        written.append("recall_at_k.png")
    for metric in (f"recall@{k}", "answer_containment", "llm_correct"):
        name = f"by_length_{metric.replace('@', '_at_')}.png"
        if plot_by_length(out_dir / name, per_length, metric):
            written.append(name)
    return written


