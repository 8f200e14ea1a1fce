"""`linkscan inspect`: versions, counts, drop reasons, label statistics and sample examples."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def inspect(
    dataset: str = typer.Argument(..., help="A dataset version folder, a dataset folder, or a dataset name under --data."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: $LINKSCAN_DATA, else ./data)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable statistics."),
    sample: int = typer.Option(3, "--sample", min=0, help="How many examples to render."),
    full: bool = typer.Option(False, "--full", help="Render every unit of each sample, not only those near the positives."),
    verify: bool = typer.Option(False, "--verify", help="Check every shard's sha256 against the manifest, then every row."),
    path_only: bool = typer.Option(False, "--path", help="Print only the version folder (LATEST for a dataset), e.g. for DuckDB."),
) -> None:
    """Show what a generated dataset holds."""
    from linkscan.pipeline.store import StoreError
    from linkscan.schemas import SchemaError

    try:
        _show(dataset, data, as_json, sample, full, verify, path_only)
    except (StoreError, SchemaError) as error:  # a damaged or unreadable shard names its file
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _show(dataset: str, data: Optional[Path], as_json: bool, sample: int, full: bool, verify: bool,
          path_only: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from linkscan.flows.runtime import resolve_data_root
    from linkscan.pipeline.inspect import dataset_stats, partial_note, render_example, sample_examples
    from linkscan.pipeline.store import open_dataset

    ds = open_dataset(dataset, data_root=resolve_data_root(str(data) if data else None))
    if path_only:
        typer.echo(str(ds.path))
        return
    verified = None
    if verify:
        ds.verify()
        verified = {"shards": len(ds.manifest["shards"]), "sha256": "ok", "rows_checked": ds.validate_rows()}
    stats = dataset_stats(ds)
    partial = partial_note(stats)
    if as_json:
        stats["verified"] = verified
        stats["samples"] = sample_examples(ds, sample) if sample else []
        typer.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        if partial:  # also on stderr, where a reader piping the JSON still sees it
            typer.echo(f"warning: {ds.path}: {partial}", err=True)
        return

    console = Console()
    console.print(f"[bold]{stats['name']}[/bold] version [bold]{stats['version']}[/bold]  ({stats['path']})", soft_wrap=True)
    if partial:
        console.print(partial, style="bold red", markup=False, highlight=False, soft_wrap=True)
    marks = {stats["latest"]: " (LATEST)", **{version: " (partial)" for version in stats["partial_versions"]}}
    versions = ", ".join(version + marks.get(version, "") for version in stats["versions"])
    console.print(f"versions: {versions}" + ("  (sha256 and rows verified)" if verify else ""), highlight=False,
                  soft_wrap=True)
    table = Table("artifact", "rows", title="shards")
    for artifact, rows in stats["rows"].items():
        table.add_row(artifact, f"{rows:,}")
    console.print(table)
    for title, values in (("counts", stats["counts"]), ("drop reasons", stats["drop_reasons"])):
        if values:
            table = Table("name", "value", title=title)
            for key, value in values.items():
                table.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
            console.print(table)
    labels = stats["labels"]
    table = Table("label statistic", "value", title="labels")
    for key, value in labels.items():
        table.add_row(key, json.dumps(value))
    console.print(table)
    for row in sample_examples(ds, sample):
        console.rule()
        console.print(render_example(row, context=len(row["sentences"]) if full else 1), markup=False, highlight=False)
