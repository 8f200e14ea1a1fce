"""The README's ways of opening shards work: DuckDB, polars and Hugging Face `datasets`."""
from __future__ import annotations

import duckdb
import polars as pl

from linkscan.pipeline.store import DatasetWriter
from tests.store_data import example_table
from tests.store_data import publish


def test_duckdb_reads_the_published_shards(tmp_path):
    path = publish(tmp_path)
    rows = duckdb.sql(
        f"SELECT method, count(*) AS n, avg(len(positives)) AS positives "
        f"FROM read_parquet('{path}/data/train-*.parquet') GROUP BY method"
    ).fetchall()
    assert rows == [("link", 12, 3.0)]


def test_duckdb_glob_over_all_versions_sees_no_unfinished_shards(tmp_path):
    publish(tmp_path)
    with DatasetWriter(tmp_path, "demo", "unfinished", {}, {}) as writer:
        writer.write_shard("examples", 0, 1, example_table())
        [(count,)] = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{tmp_path}/datasets/demo/*/data/train-*.parquet')"
        ).fetchall()
    assert count == 12  # only the published version's rows


def test_polars_scans_the_shards_lazily(tmp_path):
    path = publish(tmp_path)
    frame = (
        pl.scan_parquet(f"{path}/data/train-*.parquet")
        .select(pl.col("question"), pl.col("positives").list.len().alias("n_pos"))
        .collect()
    )
    assert frame.height == 12 and frame["n_pos"].to_list() == [3] * 12


def test_hugging_face_datasets_loads_the_train_split(tmp_path):
    from datasets import load_dataset

    path = publish(tmp_path)
    dataset = load_dataset("parquet", data_files={"train": f"{path}/data/train-*.parquet"},
                           cache_dir=str(tmp_path / "hf-cache"))
    train = dataset["train"]
    assert train.num_rows == 12
    assert train[0]["question"] == "What does the tutorial say in passage 0?"
