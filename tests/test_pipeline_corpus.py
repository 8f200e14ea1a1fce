"""Corpus to chunks end to end on the dev corpus, plus ids, dedupe, filters and fingerprints."""
from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from linkscan.pipeline.clean import clean_text
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.corpus import corpus_to_chunks, fingerprint_inputs, iter_documents
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.tokenize import load_tokenizer
from linkscan.schemas import records_to_table, validate_table

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

SOURCES = ("gutenberg", "rfc", "scotus", "pydocs")


@pytest.fixture(scope="module")
def dev_sample(dev_corpus, tmp_path_factory):
    """The first document of each dev-corpus file (about 600k characters), as one JSONL file."""
    path = tmp_path_factory.mktemp("dev") / "sample.jsonl"
    with open(path, "w") as out:
        for source in SOURCES:
            with gzip.open(dev_corpus / f"{source}.jsonl.gz", "rt") as handle:
                out.write(handle.readline())
    return path


@pytest.fixture(scope="module")
def dev_chunks(dev_sample, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=2000)
    drops = Drops()
    return config, list(corpus_to_chunks(dev_sample, config, drops)), drops


def test_every_dev_document_is_kept(dev_chunks):
    _, results, drops = dev_chunks
    assert len(results) == len(SOURCES)
    assert drops.as_dict() == {}


def test_sentence_ends_strictly_increase_in_every_chunk(dev_chunks):
    _, results, _ = dev_chunks
    for _, chunks in results:
        for chunk in chunks:
            assert all(b > a for a, b in zip(chunk.sentence_ends, chunk.sentence_ends[1:]))
            assert chunk.sentence_ends[0] >= 0 and chunk.sentence_ends[-1] == len(chunk.token_ids) - 1
        validate_table(records_to_table("chunks", chunks), "chunks", "dev sample")


def test_each_units_tokens_decode_to_exactly_its_text(dev_chunks):
    config, results, _ = dev_chunks
    tokenizer = load_tokenizer(config.tokenizer)
    for _, chunks in results:
        for chunk in chunks:
            starts = [0] + [end + 1 for end in chunk.sentence_ends[:-1]]
            for unit, start, end in zip(chunk.sentences, starts, chunk.sentence_ends):
                assert tokenizer.decode(chunk.token_ids[start: end + 1], skip_special_tokens=False) == unit


def test_units_concatenate_back_to_the_cleaned_document(dev_chunks, dev_sample):
    config, results, _ = dev_chunks
    raw_texts = [json.loads(line)["text"] for line in dev_sample.read_text().splitlines()]
    for (document, chunks), raw in zip(results, raw_texts):
        assert "".join(unit for chunk in chunks for unit in chunk.sentences) == document.text
        assert document.text == clean_text(raw, max_line_repeats=config.max_line_repeats)


def test_chunks_stay_within_the_budget_and_units_above_the_minimum(dev_chunks):
    config, results, _ = dev_chunks
    for _, chunks in results:
        for chunk in chunks:
            assert config.min_chunk_tokens <= len(chunk.token_ids) <= config.chunk_tokens
            sizes = [b - a for a, b in zip([-1, *chunk.sentence_ends], chunk.sentence_ends)]
            assert min(sizes) >= config.min_unit_tokens or len(chunk.sentences) == 1


def test_doc_id_is_the_content_hash_and_chunk_ids_follow_it(dev_chunks):
    _, results, _ = dev_chunks
    for document, chunks in results:
        assert document.doc_id == hashlib.sha256(document.text.encode()).hexdigest()[:16]
        assert chunks[0].chunk_id == f"{document.doc_id}-0000"
        assert document.lang == "en" and document.lang_score > 0.9


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def passage(dev_corpus):
    with gzip.open(dev_corpus / "scotus.jsonl.gz", "rt") as handle:
        return json.loads(handle.readline())["text"][:5000]


def test_exact_duplicates_are_dropped_across_files(tmp_path, passage):
    first = _write_jsonl(tmp_path / "a.jsonl", [{"text": passage}])
    second = _write_jsonl(tmp_path / "b.jsonl", [{"text": passage + "\n\n"}])  # same text once cleaned
    drops = Drops()
    documents = list(iter_documents([first, second], CorpusConfig(), drops))
    assert [d.source for d in documents] == [f"{first}:1"]
    assert drops.as_dict() == {"duplicate": 1}


def test_documents_below_min_doc_chars_are_dropped(tmp_path, passage):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": passage[:500]}, {"text": passage}])
    drops = Drops()
    documents = list(iter_documents(path, CorpusConfig(min_doc_chars=1000), drops))
    assert [d.n_chars for d in documents] == [len(passage.strip())]
    assert drops.as_dict() == {"too_short": 1}


def test_an_html_page_in_a_jsonl_field_is_converted(tmp_path, passage):
    page = f"<!DOCTYPE html><html><head><title>Opinion</title></head><body><nav>Menu</nav><p>{passage}</p></body></html>"
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": page}])
    (document,) = iter_documents(path, CorpusConfig(), Drops())
    assert document.title == "Opinion"
    assert "Menu" not in document.text and "<p>" not in document.text


def test_bad_files_do_not_stop_the_good_ones(tmp_path, passage):
    good = _write_jsonl(tmp_path / "good.jsonl", [{"text": passage}])
    (tmp_path / "bad.jsonl").write_text("{broken\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "zeros.txt").write_bytes(b"\x00" * 4096)  # a sparse or zeroed file
    drops = Drops()
    documents = list(iter_documents([tmp_path], CorpusConfig(), drops))
    assert [d.source for d in documents] == [f"{good}:1"]
    assert drops.as_dict() == {"binary": 2, "malformed_line": 1}


def test_fingerprints_change_with_content_and_not_otherwise(tmp_path, passage):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": passage}])
    before = fingerprint_inputs([path])
    assert fingerprint_inputs([str(path)]) == before
    assert before["files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _write_jsonl(path, [{"text": passage + " More."}])
    assert fingerprint_inputs([path]) != before


def test_the_three_invariants_hold_for_every_chunk_of_the_whole_dev_corpus(dev_corpus, tokenizer_path):
    # The done-when over all of the dev corpus (the fixtures above use one document per file).
    config = CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=2000)
    tokenizer = load_tokenizer(config.tokenizer)
    documents = chunks_seen = 0
    for document, chunks in corpus_to_chunks(sorted(dev_corpus.glob("*.jsonl.gz")), config, Drops()):
        documents += 1
        assert "".join(unit for chunk in chunks for unit in chunk.sentences) == document.text, document.source
        for chunk in chunks:
            chunks_seen += 1
            ends = chunk.sentence_ends
            assert all(b > a for a, b in zip(ends, ends[1:])) and ends[-1] == len(chunk.token_ids) - 1, chunk.chunk_id
            spans = [chunk.token_ids[start:end + 1] for start, end in zip([0, *[e + 1 for e in ends[:-1]]], ends)]
            assert tokenizer.decode_batch(spans, skip_special_tokens=False) == chunk.sentences, chunk.chunk_id
    assert documents >= 90 and chunks_seen >= 3000
