"""The dataset store: atomic publishing, resume after a kill, determinism, checksums, schema checks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from linkscan.pipeline.store import (
    ChecksumError,
    DatasetLockedError,
    DatasetWriter,
    StoreError,
    VersionStaging,
    latest_version,
    open_dataset,
    version_id,
)
from linkscan.schemas import SchemaError
from tests.store_data import CONFIG, INPUTS, REPO, example_table, publish, publish_partial



def test_version_id_depends_only_on_config_and_inputs():
    assert version_id(CONFIG, INPUTS) == version_id(dict(reversed(list(CONFIG.items()))), dict(INPUTS))
    assert version_id({**CONFIG, "seed": 1}, INPUTS) != version_id(CONFIG, INPUTS)
    assert version_id(CONFIG, {"corpus/a.jsonl": "sha256:abd"}) != version_id(CONFIG, INPUTS)


def test_published_layout_manifest_and_latest(tmp_path):
    path = publish(tmp_path)
    assert path == tmp_path / "datasets" / "demo" / version_id(CONFIG, INPUTS)
    assert sorted(p.name for p in (path / "data").iterdir()) == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["config"] == CONFIG and manifest["input_fingerprints"] == INPUTS
    assert [s["rows"] for s in manifest["shards"]] == [6, 6]
    assert manifest["schema_versions"]["examples"] == 1
    assert latest_version(tmp_path, "demo") == path.name
    assert not list((tmp_path / "datasets" / "demo" / ".partial").iterdir())


def test_identical_inputs_give_byte_identical_shards(tmp_path):
    first = publish(tmp_path / "a")
    second = publish(tmp_path / "b")
    assert first.name == second.name
    for shard in sorted((first / "data").iterdir()):
        assert shard.read_bytes() == (second / "data" / shard.name).read_bytes()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from linkscan.pipeline.store import DatasetWriter, version_id
    from tests.store_data import example_table
    from tests.store_data import CONFIG, INPUTS
    with DatasetWriter({root!r}, "demo", version_id(CONFIG, INPUTS), CONFIG, INPUTS) as writer:
        writer.write_shard("examples", 0, 2, example_table(offset=0))
        os.kill(os.getpid(), signal.SIGKILL)  # dies between the shards and the manifest
""")


def test_writer_killed_before_the_manifest_leaves_nothing_visible_and_a_rerun_completes(tmp_path):
    script = KILLED_WRITER.format(repo=str(REPO), root=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert result.returncode == -signal.SIGKILL
    name_dir = tmp_path / "datasets" / "demo"
    # what a reader's glob over published versions would see
    assert list(name_dir.glob("*/data/train-*.parquet")) == []
    assert list(tmp_path.glob("datasets/*/*/data/train-*.parquet")) == []
    assert latest_version(tmp_path, "demo") is None
    with pytest.raises(StoreError, match="not a dataset version folder"):
        open_dataset("demo", data_root=tmp_path)
    staged = VersionStaging(tmp_path, "demo", version_id(CONFIG, INPUTS))
    assert staged.has_shard("examples", 0, 2) and not staged.has_shard("examples", 1, 2)
    finished_before = (staged.dir / "data" / "train-00000-of-00002.parquet").read_bytes()

    path = publish(tmp_path)  # the rerun keeps shard 0 and writes shard 1
    assert (path / "data" / "train-00000-of-00002.parquet").read_bytes() == finished_before
    clean = publish(tmp_path / "clean")
    for shard in ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet"):
        assert (path / "data" / shard).read_bytes() == (clean / "data" / shard).read_bytes()
    assert open_dataset("demo", data_root=tmp_path).num_rows() == 12


def test_second_writer_of_the_same_version_is_refused(tmp_path):
    version = version_id(CONFIG, INPUTS)
    with DatasetWriter(tmp_path, "demo", version, CONFIG, INPUTS) as writer:
        writer.write_shard("examples", 0, 1, example_table())
        with pytest.raises(DatasetLockedError, match=f"dataset 'demo' version {version} is being written by another process \\(pid {os.getpid()}\\)"):
            with DatasetWriter(tmp_path, "demo", version, CONFIG, INPUTS):
                pass
        path = writer.publish({"counts": {}}, "# card\n")
    assert open_dataset(path).num_rows() == 6


def test_corrupted_shard_is_detected_by_checksum(tmp_path):
    path = publish(tmp_path)
    shard = path / "data" / "train-00001-of-00002.parquet"
    payload = bytearray(shard.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    shard.write_bytes(bytes(payload))
    dataset = open_dataset(path)
    with pytest.raises(ChecksumError, match="train-00001-of-00002.parquet: sha256 .* does not match"):
        dataset.verify()


def test_a_file_added_to_a_published_version_is_not_read_and_verify_names_it(tmp_path):
    import shutil

    path = publish(tmp_path)
    shutil.copy(path / "data" / "train-00000-of-00002.parquet", path / "data" / "train-00002-of-00002.parquet")
    dataset = open_dataset(path)
    assert dataset.read_table().num_rows == dataset.num_rows() == 12  # the manifest's shards only
    with pytest.raises(ChecksumError, match="train-00002-of-00002.parquet: not listed in dataset.json"):
        dataset.verify()


def test_a_shard_of_another_size_is_named_by_verify(tmp_path):
    path = publish(tmp_path)
    with open(path / "data" / "train-00001-of-00002.parquet", "ab") as shard:
        shard.write(b"\0")
    with pytest.raises(ChecksumError, match=r"train-00001-of-00002.parquet: \d+ bytes, the manifest says \d+"):
        open_dataset(path).verify()


def test_shards_are_zstd_with_bounded_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "store"
    version = version_id(CONFIG, INPUTS)
    with DatasetWriter(root, "big", version, CONFIG, INPUTS) as writer:
        writer.write_shard("examples", 0, 1, pa.concat_tables([example_table()] * 50))  # 300 rows
        path = writer.publish({"counts": {}}, "# big\n")
    metadata = pq.ParquetFile(path / "data" / "train-00000-of-00001.parquet").metadata
    assert metadata.num_rows == 300 and metadata.num_row_groups >= 2
    assert all(metadata.row_group(i).num_rows <= 128 for i in range(metadata.num_row_groups))
    assert {metadata.row_group(0).column(c).compression for c in range(metadata.num_columns)} == {"ZSTD"}


@pytest.mark.parametrize("metadata, message", [
    (None, "no linkscan artifact and schema version in the file metadata"),
    ({b"linkscan.artifact": b"examples", b"linkscan.schema_version": b"99"},
     "examples schema version 99, this linkscan reads version 1"),
])
def test_a_shard_rewritten_without_or_with_other_metadata_is_refused_on_read(tmp_path, metadata, message):
    import pyarrow.parquet as pq

    path = publish(tmp_path)
    shard = path / "data" / "train-00001-of-00002.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata(metadata), shard)  # e.g. rewritten by another tool
    with pytest.raises(SchemaError, match=f"train-00001-of-00002.parquet: {message}"):
        open_dataset(path).read_table()


def test_validate_rows_names_the_file_row_and_field_of_a_bad_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = publish(tmp_path)
    assert open_dataset(path).validate_rows() == 12
    shard = path / "data" / "train-00001-of-00002.parquet"
    table = pq.read_table(shard)
    positives = table.column("positives").to_pylist()
    positives[4] = [0, 500]  # unit 500 of an example of 30 units
    table = table.set_column(table.schema.get_field_index("positives"), table.schema.field("positives"),
                             pa.array(positives, table.schema.field("positives").type))
    pq.write_table(table, shard)  # the schema and its metadata are kept
    with pytest.raises(SchemaError, match=r"data/train-00001-of-00002.parquet: row 4: field 'positives' has unit index 500"):
        open_dataset(path).validate_rows()


def test_a_shard_written_piece_by_piece_has_full_row_groups_and_appears_only_when_complete(tmp_path):
    import pyarrow.parquet as pq

    version = version_id(CONFIG, INPUTS)
    with DatasetWriter(tmp_path, "pieces", version, CONFIG, INPUTS) as writer:
        staging = writer.staging
        with pytest.raises(RuntimeError, match="worker died"):
            with staging.shard_writer("examples", 0, 1) as pieces:
                pieces.write(example_table())
                raise RuntimeError("worker died")
        shard = staging.dir / "data" / "train-00000-of-00001.parquet"
        assert not shard.exists() and not list(shard.parent.glob(".*.tmp"))  # nothing half-written is left
        with staging.shard_writer("examples", 0, 1) as pieces:
            for _ in range(50):
                pieces.write(example_table())  # 50 pieces of 6 rows, as documents come
        assert [pq.ParquetFile(shard).metadata.row_group(i).num_rows for i in range(3)] == [128, 128, 44]
        writer.publish({"counts": {}}, "# pieces\n")


def test_shard_with_a_wrong_schema_is_refused_naming_file_and_field(tmp_path):
    path = publish(tmp_path)
    shard = path / "data" / "train-00000-of-00002.parquet"
    table = pq.read_table(shard).drop_columns(["positives"])
    pq.write_table(table, shard)
    dataset = open_dataset(path)
    with pytest.raises(SchemaError, match=r"train-00000-of-00002.parquet: field 'positives' is missing"):
        list(dataset.iter_batches())


def test_reader_streams_with_column_projection(tmp_path):
    dataset = open_dataset(publish(tmp_path))
    batches = list(dataset.iter_batches(columns=["example_id", "positives"], batch_size=4))
    assert [b.num_rows for b in batches] == [4, 2, 4, 2]
    assert batches[0].schema.names == ["example_id", "positives"]
    assert batches[0].column("positives").to_pylist()[0] == [1, 2, 20]


def test_invalid_table_never_reaches_the_store(tmp_path):
    table = example_table()
    bad = table.set_column(table.schema.get_field_index("positives"), "positives",
                           __import__("pyarrow").array([[999]] * table.num_rows, table.schema.field("positives").type))
    with DatasetWriter(tmp_path, "demo", "v1", CONFIG, INPUTS) as writer:
        with pytest.raises(SchemaError, match="field 'positives' has unit index 999"):
            writer.write_shard("examples", 0, 1, bad)
        assert not writer.has_shard("examples", 0, 1)


KILLED_BEFORE_LATEST = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import linkscan.pipeline.store as store
    from tests.store_data import example_table
    from tests.store_data import CONFIG, INPUTS

    write = store.atomic_write
    def dies_at_latest(path, payload):
        if path.name == "LATEST":
            os.kill(os.getpid(), signal.SIGKILL)  # the version folder is in place, LATEST not yet
        write(path, payload)
    store.atomic_write = dies_at_latest
    with store.DatasetWriter({root!r}, "demo", {version!r}, CONFIG, INPUTS) as writer:
        writer.write_shard("examples", 0, 1, example_table())
        writer.publish({{"counts": {{}}}}, "# card\\n")
""")


@pytest.mark.parametrize("earlier_version", [False, True], ids=["first-version", "stale-latest"])
def test_a_publication_killed_before_latest_is_finished_by_the_rerun(tmp_path, earlier_version):
    if earlier_version:
        publish(tmp_path)  # LATEST names this one
    script = KILLED_BEFORE_LATEST.format(repo=str(REPO), root=str(tmp_path), version="v-new")
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO).returncode == -signal.SIGKILL
    name_dir = tmp_path / "datasets" / "demo"
    assert (name_dir / "v-new" / "dataset.json").is_file()
    assert latest_version(tmp_path, "demo") == (version_id(CONFIG, INPUTS) if earlier_version else None)
    with DatasetWriter(tmp_path, "demo", "v-new", CONFIG, INPUTS) as writer:  # the rerun of the same version
        assert writer.is_published
    assert latest_version(tmp_path, "demo") == "v-new"
    assert open_dataset("demo", data_root=tmp_path).version == "v-new"
    assert sorted(p.name for p in name_dir.iterdir() if p.name.startswith(".")) == [".partial"]  # no journal, no lock


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00", b"../other\n", b"nonexistent\n", b""],
                         ids=["binary", "path-outside", "no-such-version", "empty"])
def test_latest_that_names_no_version_is_an_error_never_followed_and_a_rerun_repairs_it(tmp_path, content):
    path = publish(tmp_path)
    other = tmp_path / "datasets" / "other"  # what '../other' would reach
    (other / "dataset.json").parent.mkdir(parents=True)
    (other / "dataset.json").write_text("{}")
    (path.parent / "LATEST").write_bytes(content)
    assert latest_version(tmp_path, "demo") is None
    with pytest.raises(StoreError, match=f"LATEST: does not name a published version \\(published: {path.name}\\)"):
        open_dataset("demo", data_root=tmp_path)
    with pytest.raises(StoreError, match="does not name a published version"):
        open_dataset(path.parent)
    with DatasetWriter(tmp_path, "demo", path.name, CONFIG, INPUTS) as writer:  # the rerun of the version
        assert writer.is_published
    assert open_dataset("demo", data_root=tmp_path).path == path


def test_a_version_whose_manifest_was_deleted_is_rebuilt_by_the_rerun(tmp_path):
    path = publish(tmp_path)
    shard_bytes = (path / "data" / "train-00001-of-00002.parquet").read_bytes()
    (path / "dataset.json").unlink()
    (path / "data" / "train-00000-of-00002.parquet").write_bytes(b"damaged")
    rebuilt = publish(tmp_path)  # no "Directory not empty": the manifest-less folder is replaced
    assert rebuilt == path and open_dataset(path).num_rows() == 12
    open_dataset(path).verify()
    assert (path / "data" / "train-00001-of-00002.parquet").read_bytes() == shard_bytes


@pytest.mark.parametrize("name", ["demo\n", "x" * 101, "../up", ".hidden", "a/b", ""])
def test_an_invalid_dataset_name_is_refused_with_the_rule(tmp_path, name):
    with pytest.raises(StoreError, match="use 1 to 100 letters, digits"):
        DatasetWriter(tmp_path, name, "v1", CONFIG, INPUTS)


def test_a_writer_leaves_no_lock_file_behind(tmp_path):
    path = publish(tmp_path)
    assert [p.name for p in path.parent.iterdir() if "lock" in p.name] == []
    assert list(path.rglob("*.lock")) == []


def test_a_truncated_shard_is_an_error_naming_the_file(tmp_path):
    path = publish(tmp_path)
    shard = path / "data" / "train-00001-of-00002.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(StoreError, match=r"train-00001-of-00002.parquet: not a readable Parquet shard .*--repair"):
        open_dataset(path).read_table()


def test_sweeping_after_an_interruption_removes_stale_locks_and_temporaries_but_not_a_live_writers(tmp_path):
    from linkscan.pipeline.store import _file_lock, sweep_staging

    staging = tmp_path / "datasets" / "demo" / ".partial" / "v1" / "data"
    staging.mkdir(parents=True)
    stale_lock, stale_tmp = staging / ".train-00000-of-00002.parquet.lock", staging / ".train-00000-of-00002.parquet.tmp"
    stale_lock.write_text("12345")
    stale_tmp.write_bytes(b"PAR1 half a shard")
    live_lock, live_tmp = staging / ".train-00001-of-00002.parquet.lock", staging / ".train-00001-of-00002.parquet.tmp"
    with _file_lock(live_lock, "a live writer"):
        live_tmp.write_bytes(b"PAR1 being written")
        assert sorted(sweep_staging(tmp_path)) == sorted([stale_lock, stale_tmp])
        assert live_lock.exists() and live_tmp.exists()


def test_a_version_names_the_one_it_follows_as_its_parent(tmp_path):
    first = publish(tmp_path)
    assert json.loads((first / "dataset.json").read_text())["parent_version"] is None
    with DatasetWriter(tmp_path, "demo", "v-second", CONFIG, INPUTS) as writer:
        writer.write_shard("examples", 0, 1, example_table())
        second = writer.publish({"counts": {}}, "# second\n")
    assert json.loads((second / "dataset.json").read_text())["parent_version"] == first.name


def test_a_partial_version_published_after_a_complete_one_leaves_latest_on_the_complete_one(tmp_path):
    complete = publish(tmp_path)
    partial = publish_partial(tmp_path)
    assert latest_version(tmp_path, "demo") == complete.name
    assert open_dataset("demo", data_root=tmp_path).num_rows() == 12  # the complete one's, not the partial's 2
    assert json.loads((partial / "dataset.json").read_text())["parent_version"] == complete.name
    assert open_dataset(partial).complete is False and open_dataset(complete).complete is True
    with DatasetWriter(tmp_path, "demo", partial.name, {}, INPUTS) as writer:  # the --allow-partial rerun
        assert writer.is_published
    assert latest_version(tmp_path, "demo") == complete.name
    assert sorted(p.name for p in partial.parent.iterdir() if p.name.startswith(".")) == [".partial"]  # no journal


def test_a_dataset_with_only_a_partial_version_has_no_latest_and_names_the_partial_one(tmp_path):
    partial = publish_partial(tmp_path)
    assert not (partial.parent / "LATEST").exists()
    with pytest.raises(StoreError, match=f"demo: no complete version is published, only the partial {partial.name}; "
                                         f"open it by its folder \\({partial}\\)"):
        open_dataset("demo", data_root=tmp_path)
    assert open_dataset(partial).version == partial.name  # by id it opens
    complete = publish(tmp_path)  # the complete run that follows becomes LATEST
    assert open_dataset(partial.parent).path == complete


def test_a_latest_that_names_a_partial_version_is_not_followed_and_the_complete_rerun_repairs_it(tmp_path):
    complete = publish(tmp_path)
    partial = publish_partial(tmp_path)
    (partial.parent / "LATEST").write_text(f"{partial.name}\n")  # what earlier versions of linkscan wrote
    assert latest_version(tmp_path, "demo") is None
    with pytest.raises(StoreError, match=f"LATEST: names {partial.name}, a partial version \\(LATEST names complete "
                                         f"versions only; complete: {complete.name}\\); rerun the generate command"):
        open_dataset("demo", data_root=tmp_path)
    with DatasetWriter(tmp_path, "demo", complete.name, CONFIG, INPUTS) as writer:  # the complete command, rerun
        assert writer.is_published
    assert latest_version(tmp_path, "demo") == complete.name


@pytest.mark.parametrize("how", ["name", "folder"])
def test_a_dataset_whose_latest_was_deleted_is_named_with_its_versions(tmp_path, how):
    path = publish(tmp_path)
    (path.parent / "LATEST").unlink()
    target = "demo" if how == "name" else path.parent
    with pytest.raises(StoreError, match=f"LATEST: missing \\(published: {path.name}\\); rerun the generate command"):
        open_dataset(target, data_root=tmp_path)
