"""Chunking: chunks of at most chunk_tokens tokens at unit boundaries, written through the store."""
from __future__ import annotations

import gzip
import json

import pytest

from linkscan.pipeline.chunking import chunk_spans
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.corpus import document_chunks
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.segment import Segmenter
from linkscan.pipeline.store import DatasetWriter, open_dataset
from linkscan.pipeline.tokenize import load_tokenizer
from linkscan.schemas import Document, records_to_table


def test_spans_cover_every_unit_in_order():
    units = [30, 50, 20, 40, 60, 10, 45]
    spans = chunk_spans(units, chunk_tokens=100)
    assert [i for start, end in spans for i in range(start, end)] == list(range(len(units)))


def test_spans_never_exceed_chunk_tokens():
    units = [37, 21, 64, 25, 58, 33, 20, 41, 63, 22] * 20
    for start, end in chunk_spans(units, chunk_tokens=300):
        assert sum(units[start:end]) <= 300


def test_spans_are_balanced_instead_of_leaving_a_tiny_last_chunk():
    units = [25] * 44  # 1,100 tokens: greedy packing would give 1,000 + 100
    sizes = [sum(units[a:b]) for a, b in chunk_spans(units, chunk_tokens=1000)]
    assert sizes == [550, 550]


def test_a_unit_larger_than_a_chunk_stands_alone():
    assert chunk_spans([10, 500, 10], chunk_tokens=100) == [(0, 1), (1, 2), (2, 3)]


def test_config_refuses_chunks_smaller_than_the_largest_unit():
    with pytest.raises(ValueError, match="chunk_tokens"):
        CorpusConfig(chunk_tokens=80, min_unit_tokens=20, max_unit_tokens=64)


@pytest.fixture(scope="module")
def book(dev_corpus):
    with gzip.open(dev_corpus / "gutenberg.jsonl.gz", "rt") as handle:
        text = json.loads(handle.readline())["text"][:40_000]
    return Document(doc_id="0123456789abcdef", source="dev", title=None, text=text, lang="en", lang_score=1.0,
                    n_chars=len(text))


@pytest.fixture(scope="module")
def chunked(book, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=2000)
    segmenter = Segmenter(config, load_tokenizer(config.tokenizer))
    return config, document_chunks(book, config, segmenter)


def test_document_chunks_have_deterministic_ids_and_indices(chunked):
    _, chunks = chunked
    assert [c.chunk_id for c in chunks] == [f"0123456789abcdef-{i:04d}" for i in range(len(chunks))]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert len(chunks) >= 4


def test_document_chunks_respect_the_token_budget_and_keep_all_text(chunked, book):
    config, chunks = chunked
    assert all(len(c.token_ids) <= config.chunk_tokens for c in chunks)
    assert "".join(unit for c in chunks for unit in c.sentences) == book.text


def test_chunk_sentence_ends_are_relative_to_the_chunk(chunked):
    _, chunks = chunked
    for chunk in chunks:
        assert chunk.sentence_ends[-1] == len(chunk.token_ids) - 1
        assert len(chunk.sentence_ends) == len(chunk.sentences)
        assert chunk.tokenizer.endswith("tokenizer.json")


def test_a_document_shorter_than_min_chunk_tokens_gives_no_chunk(tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_chunk_tokens=200)
    segmenter = Segmenter(config, load_tokenizer(config.tokenizer))
    short = Document("feedfeedfeedfeed", "x", None, "A short note. " * 20, "en", 1.0, 280)
    drops = Drops()
    assert document_chunks(short, config, segmenter, drops=drops) == []
    assert drops.as_dict() == {"chunk_too_short": 1}


def test_document_chunks_refuses_a_tokenizer_other_than_the_segmenters(book, tokenizer_path):
    from tokenizers import Tokenizer

    config = CorpusConfig(tokenizer=str(tokenizer_path))
    segmenter = Segmenter(config, load_tokenizer(config.tokenizer))
    other = Tokenizer.from_file(str(tokenizer_path))
    with pytest.raises(ValueError, match="another tokenizer"):
        document_chunks(book, config, segmenter, other)


def test_chunks_are_written_and_read_back_through_the_store(chunked, tmp_path):
    _, chunks = chunked
    with DatasetWriter(tmp_path, "chunks-test", "v1", {}, {}) as writer:
        writer.write_shard("chunks", 0, 1, records_to_table("chunks", chunks))
        path = writer.publish({"counts": {"chunks": len(chunks)}}, "# chunks\n")
    table = open_dataset(path).read_table("chunks")
    assert table.column("chunk_id").to_pylist() == [c.chunk_id for c in chunks]
    assert table.column("sentence_ends").to_pylist() == [c.sentence_ends for c in chunks]
