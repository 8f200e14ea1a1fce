"""Shards cut over the corpus's content: one large file feeds every shard, documents are never
split or read twice, and exact duplicates are removed corpus-wide (the first in corpus order wins)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkscan.generators.config import GenerateConfig
from linkscan.generators.stage import run_generation
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.readers import read_documents
from linkscan.pipeline.sharding import plan_shards
from linkscan.pipeline.store import open_dataset


@pytest.fixture(scope="module")
def documents(dev_corpus) -> list[dict]:
    """16 real documents (Python library docs and RFCs), cut to 12,000 characters each."""
    rows = []
    for name, count in (("pydocs.jsonl.gz", 8), ("rfc.jsonl.gz", 8)):
        with gzip.open(dev_corpus / name, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                rows.append({"id": row["id"], "text": row["text"][:12_000]})
                if len(rows) % 8 == 0:
                    break
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_all(pieces) -> list[tuple[str, str]]:
    config = CorpusConfig()
    return [(raw.source, raw.text) for piece in pieces for raw in read_documents(Path(piece.path), config, Drops(), piece)]


def test_one_jsonl_file_is_cut_into_the_shards_asked_for_at_line_starts(tmp_path, documents):
    path = write_jsonl(tmp_path / "all.jsonl", documents)
    plan = plan_shards([path], 4)
    assert len(plan.shards) == 4 and plan.notes == ()
    pieces = [piece for shard in plan.shards for piece in shard]
    assert [p.unit for p in pieces] == ["bytes"] * 4
    assert pieces[0].start == 0 and pieces[-1].end is None
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))  # contiguous, nothing read twice
    raw = path.read_bytes()
    assert all(raw[p.start - 1:p.start] == b"\n" for p in pieces[1:])  # each piece starts a line
    # Read piece by piece, the documents and their names (file:line#id) are those of the whole file.
    assert read_all(pieces) == read_all(plan_shards([path], 1).shards[0])


def test_parquet_is_cut_at_row_groups_and_gzip_is_kept_whole_and_said_so(tmp_path, documents):
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(documents), parquet, row_group_size=2)
    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(write_jsonl(tmp_path / "x.jsonl", documents).read_bytes()))
    plan = plan_shards([parquet], 4)
    assert len(plan.shards) == 4 and {p.unit for shard in plan.shards for p in shard} == {"row_groups"}
    assert read_all([p for shard in plan.shards for p in shard]) == read_all(plan_shards([parquet], 1).shards[0])
    whole = plan_shards([gz], 4)
    assert len(whole.shards) == 1
    assert whole.notes[0] == "num_shards 4: the corpus gives 1 shard(s) (cuts fall only where a document starts)"
    assert "gzip cannot be entered in the middle" in whole.notes[1]


def _examples(result) -> set[tuple]:
    table = open_dataset(result.path).read_table("examples", columns=["example_id", "question", "positives"])
    return {(row["example_id"], row["question"], tuple(row["positives"])) for row in table.to_pylist()}


def _config(corpus: list[Path], tokenizer_path: Path, name: str) -> GenerateConfig:
    return GenerateConfig(name=name, corpus=[str(p) for p in corpus], num_shards=4,
                          corpus_config=CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=1000,
                                                     min_chunk_tokens=100))


def test_one_file_with_num_shards_4_gives_the_examples_of_the_same_corpus_as_4_files(tmp_path, documents, tokenizer_path):
    one = write_jsonl(tmp_path / "one.jsonl", documents)
    four = [write_jsonl(tmp_path / f"part-{i}.jsonl", documents[i * 4:(i + 1) * 4]) for i in range(4)]
    from_one = run_generation(_config([one], tokenizer_path, "one"), tmp_path / "data")
    from_four = run_generation(_config(four, tokenizer_path, "four"), tmp_path / "data")
    assert len(open_dataset(from_one.path).shard_paths("examples")) == 4
    assert from_one.manifest["counts"]["documents"] == from_four.manifest["counts"]["documents"] == 16
    assert _examples(from_one) == _examples(from_four) and len(_examples(from_one)) > 8


def test_a_document_in_two_files_is_published_once_the_first_copy_kept(tmp_path, documents, tokenizer_path):
    first = write_jsonl(tmp_path / "a.jsonl", documents[:8])
    second = write_jsonl(tmp_path / "b.jsonl", documents[8:] + [documents[2]])  # documents[2] again, later
    result = run_generation(_config([first, second], tokenizer_path, "dedupe"), tmp_path / "data")
    docs = open_dataset(result.path).read_table("documents", columns=["doc_id", "source"]).to_pylist()
    assert len(docs) == len({d["doc_id"] for d in docs}) == 16
    (kept,) = [d["source"] for d in docs if d["source"].endswith(f"#{documents[2]['id']}")]
    assert kept.startswith(str(first))  # the first occurrence in corpus order
    assert result.manifest["dedupe"] == {"scope": "corpus", "cross_shard_duplicates": 1}
    assert result.manifest["drop_reasons"]["duplicate"] == 1
