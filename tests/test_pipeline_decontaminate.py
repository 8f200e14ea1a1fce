"""Decontamination: chunks sharing word n-grams with evaluation documents are dropped and counted."""
from __future__ import annotations

import gzip
import json

import pytest

from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.corpus import build_decontamination_index, corpus_to_chunks
from linkscan.pipeline.decontaminate import NgramIndex, ngram_hashes
from linkscan.pipeline.drops import Drops


def test_ngram_hashes_are_stable_and_position_sensitive():
    words = "the quick brown fox jumps over the lazy dog".split()
    first = ngram_hashes(words, 3)
    assert len(first) == 7
    assert list(first) == list(ngram_hashes(list(words), 3))
    assert first[0] != ngram_hashes(["quick", "the", "brown"], 3)[0]
    assert len(ngram_hashes(words[:2], 3)) == 0


def test_units_holding_an_evaluation_ngram_are_found_across_unit_boundaries():
    index = NgramIndex.from_texts(["Alpha beta gamma delta epsilon zeta eta theta."], n=5)
    units = ["Nothing shared here at all.", " Words then alpha beta gamma", " delta epsilon and more.", " Unrelated end."]
    assert index.contaminated_units(units) == [1]
    assert index.overlap(units) == 0.25


def test_matching_ignores_case_and_punctuation():
    index = NgramIndex.from_texts(["ALPHA, beta; gamma -- delta!"], n=4)
    assert index.contaminated_units(["alpha beta gamma delta"]) == [0]


def test_no_overlap_without_shared_ngrams():
    index = NgramIndex.from_texts(["one two three four five six"], n=4)
    assert index.overlap(["one two three five four six"]) == 0.0


@pytest.fixture(scope="module")
def eval_document(dev_evalsets):
    with gzip.open(dev_evalsets / "quality.documents.jsonl.gz", "rt") as handle:
        return json.loads(handle.readline())["text"]


def test_index_of_the_dev_evalsets_holds_every_document(dev_evalsets):
    index = build_decontamination_index([str(dev_evalsets / "*.documents.jsonl.gz")], 13)
    documents = 0
    for path in dev_evalsets.glob("*.documents.jsonl.gz"):
        with gzip.open(path, "rt") as handle:
            documents += sum(1 for line in handle if line.strip())
    assert index.documents == documents
    assert len(index) > 1_000_000


def test_a_chunk_copied_from_an_evaluation_document_is_dropped(tmp_path, dev_corpus, dev_evalsets, eval_document,
                                                                tokenizer_path):
    with gzip.open(dev_corpus / "rfc.jsonl.gz", "rt") as handle:
        plain = json.loads(handle.readline())["text"][:30_000]
    # One document of clean text, and one whose middle quotes 2,000 characters of an eval document.
    copied = plain[:15_000] + "\n\n" + eval_document[3000:5000] + "\n\n" + plain[15_000:]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": plain}) + "\n" + json.dumps({"text": copied}) + "\n")
    config = CorpusConfig(tokenizer=str(tokenizer_path), chunk_tokens=2000,
                          decontaminate=[str(dev_evalsets / "*.documents.jsonl.gz")])
    drops = Drops()
    results = list(corpus_to_chunks(corpus, config, drops))
    clean_chunks, copied_chunks = results[0][1], results[1][1]
    assert "".join(u for c in clean_chunks for u in c.sentences) == plain.strip()  # nothing dropped
    assert drops.as_dict()["decontaminated"] in (1, 2)  # the quote may straddle two chunks
    assert set(drops.as_dict()) == {"decontaminated"}
    assert all(eval_document[3200:3300] not in "".join(c.sentences) for c in copied_chunks)


def test_the_threshold_lets_a_small_overlap_through(tmp_path, dev_corpus, eval_document, tokenizer_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"text": eval_document}) + "\n")
    with gzip.open(dev_corpus / "rfc.jsonl.gz", "rt") as handle:
        text = json.loads(handle.readline())["text"][:8_000]
    quoted = text[:4000] + " " + " ".join(eval_document.split()[100:115]) + " " + text[4000:]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": quoted}) + "\n")
    strict = CorpusConfig(tokenizer=str(tokenizer_path), decontaminate=[str(eval_file)])
    lenient = strict.model_copy(update={"decontamination_threshold": 0.5})
    strict_drops, lenient_drops = Drops(), Drops()
    assert list(corpus_to_chunks(corpus, strict, strict_drops)) == []
    assert strict_drops.as_dict() == {"decontaminated": 1, "no_chunks": 1}
    assert len(list(corpus_to_chunks(corpus, lenient, lenient_drops))) == 1
    assert lenient_drops.as_dict() == {}


def test_a_missing_evaluation_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl.*decontaminate paths"):
        build_decontamination_index([str(tmp_path / "nope.jsonl")], 13)
