"""Segmentation into retrieval units: no text lost, merging, splitting, exact tokens."""
from __future__ import annotations

import gzip
import json

import pytest

from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.segment import Segmenter
from linkscan.pipeline.tokenize import tokenize_units


@pytest.fixture(scope="module")
def config(tokenizer_path):
    return CorpusConfig(tokenizer=str(tokenizer_path))


@pytest.fixture(scope="module")
def segmenter(config, tokenizer):
    return Segmenter(config, tokenizer)


@pytest.fixture(scope="module")
def book_text(dev_corpus):
    """The first 60,000 characters of the first dev-corpus book."""
    with gzip.open(dev_corpus / "gutenberg.jsonl.gz", "rt") as handle:
        return json.loads(handle.readline())["text"][:60_000]


def _token_counts(units, tokenizer):
    _, ends = tokenize_units(units, tokenizer)
    return [end - previous for previous, end in zip([-1, *ends], ends)]


def test_units_concatenate_back_to_the_text(segmenter, book_text):
    units = segmenter.units(book_text)
    assert "".join(units) == book_text
    assert len(units) > 100


def test_every_unit_has_at_least_min_unit_tokens(segmenter, tokenizer, book_text, config):
    counts = _token_counts(segmenter.units(book_text), tokenizer)
    assert min(counts) >= config.min_unit_tokens


def test_no_unit_exceeds_the_largest_possible_size(segmenter, tokenizer, book_text, config):
    counts = _token_counts(segmenter.units(book_text), tokenizer)
    assert max(counts) < config.max_unit_tokens + 2 * config.min_unit_tokens


def test_whitespace_between_sentences_opens_the_next_unit(segmenter, book_text):
    units = segmenter.units(book_text)
    assert all(not unit[-1].isspace() for unit in units)
    assert sum(unit.startswith("\n\n") for unit in units) > 10


def test_segment_tokens_equal_tokenizing_each_unit_on_its_own(segmenter, tokenizer, book_text):
    segmented = segmenter.segment(book_text)
    assert (list(segmented.token_ids), segmented.sentence_ends) == tokenize_units(segmented.units, tokenizer)


def test_short_sentences_are_merged_into_one_unit(segmenter):
    text = "Yes. No. Maybe. " * 6 + "Stop."
    units = segmenter.units(text)
    assert units == [text]


def test_a_text_shorter_than_min_unit_tokens_is_one_unit(segmenter):
    assert segmenter.units("Hi there.") == ["Hi there."]


def test_a_long_sentence_is_split_after_a_clause(tokenizer, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_unit_tokens=4, max_unit_tokens=20)
    segmenter = Segmenter(config, tokenizer)
    clause = "the river ran past the old mill and the quiet houses of the village"
    text = f"In spring {clause}, and in summer {clause}; and in autumn {clause}."
    units = segmenter.units(text)
    assert "".join(units) == text
    assert len(units) >= 3
    assert all(unit.endswith((",", ";", ".")) for unit in units[:2])
    assert max(_token_counts(units, tokenizer)) <= 20 + 2 * 4


def test_a_sentence_without_clauses_is_split_at_whitespace(tokenizer, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_unit_tokens=4, max_unit_tokens=16)
    segmenter = Segmenter(config, tokenizer)
    text = " ".join(["word"] * 100) + "."
    units = segmenter.units(text)
    assert "".join(units) == text
    assert all(unit.strip() for unit in units)
    assert max(_token_counts(units, tokenizer)) <= 16
    assert all(units[i + 1].startswith(" ") for i in range(len(units) - 1))


def test_a_run_without_whitespace_is_split_between_tokens(tokenizer, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_unit_tokens=4, max_unit_tokens=16)
    segmenter = Segmenter(config, tokenizer)
    text = "abcdefghij0123456789" * 40
    segmented = segmenter.segment(text)
    assert "".join(segmented.units) == text
    assert len(segmented.units) > 5
    assert (list(segmented.token_ids), segmented.sentence_ends) == tokenize_units(segmented.units, tokenizer)


def test_paragraph_breaks_end_a_sentence(tokenizer, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_unit_tokens=1)
    segmenter = Segmenter(config, tokenizer)
    assert segmenter.sentences("CHAPTER ONE\n\nIt was a dark night") == ["CHAPTER ONE", "\n\nIt was a dark night"]


def test_regex_segmenter_keeps_abbreviations_inside_a_sentence(tokenizer, tokenizer_path):
    config = CorpusConfig(tokenizer=str(tokenizer_path), min_unit_tokens=1, segmenter="regex")
    segmenter = Segmenter(config, tokenizer)
    sentences = segmenter.sentences("Mr. Smith met Dr. Jones. They talked! Did they agree? Yes.")
    assert sentences == ["Mr. Smith met Dr. Jones.", " They talked!", " Did they agree?", " Yes."]


def test_regex_and_spacy_segmenters_both_keep_every_character(tokenizer, tokenizer_path, book_text):
    for name in ("sentencizer", "regex"):
        segmenter = Segmenter(CorpusConfig(tokenizer=str(tokenizer_path), segmenter=name), tokenizer)
        assert "".join(segmenter.units(book_text)) == book_text


def test_unknown_spacy_pipeline_names_the_fix(tokenizer, tokenizer_path):
    with pytest.raises(ValueError, match="en_core_nothing.*sentencizer"):
        Segmenter(CorpusConfig(tokenizer=str(tokenizer_path), segmenter="en_core_nothing"), tokenizer)


def test_special_token_text_survives_segmentation(segmenter, tokenizer):
    text = "A model emits <|endoftext|> at the end of a document, and the pipeline must keep it intact."
    segmented = segmenter.segment(text)
    assert tokenizer.decode(segmented.token_ids, skip_special_tokens=False) == text


def _spacy_starts(text: str) -> list[int]:
    """Where spaCy's blank English sentencizer starts sentences, paragraph by paragraph (its raw
    output: nothing of the segmenter's own handling is repeated here)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    starts, position = [], 0
    for paragraph in text.split("\n\n"):
        starts += [position + sentence.start_char for sentence in nlp(paragraph).sents]
        position += len(paragraph) + 2
    return sorted(set(starts))


def _visible_starts(text: str, sentences: list[str]) -> list[int]:
    """The position of each sentence's first visible character."""
    starts, position = [], 0
    for sentence in sentences:
        starts.append(position + len(sentence) - len(sentence.lstrip()))
        position += len(sentence)
    return starts


def test_sentencizer_matches_spacys_sentencizer_on_real_text(segmenter, dev_corpus):
    for source in ("gutenberg", "scotus", "pydocs", "rfc"):
        with gzip.open(dev_corpus / f"{source}.jsonl.gz", "rt") as handle:
            text = json.loads(handle.readline())["text"][:40_000].strip()
        ours = _visible_starts(text, segmenter.sentences(text))
        # spaCy's starts, at their first visible character (a paragraph may open with spaces)
        theirs = sorted({start + len(text[start:]) - len(text[start:].lstrip()) for start in _spacy_starts(text)
                         if text[start:].strip()})
        at_words = {s for s in theirs if s == 0 or text[s - 1].isspace()}
        inside = [s for s in theirs if s not in at_words]
        # Where spaCy starts a sentence at the start of a word, so do we.
        assert at_words <= set(ours)
        # Where spaCy starts one inside a word ("(C", "“Yes", "logging.Handler"), ours starts in that
        # same word, at that point or before it; and we start sentences nowhere else.
        for spacy_start in inside:
            assert any(s <= spacy_start and not any(c.isspace() for c in text[s:spacy_start]) for s in ours), spacy_start
        for start in set(ours) - at_words:
            assert any(start <= x and not any(c.isspace() for c in text[start:x]) for x in inside), start


@pytest.mark.parametrize("text, second", [
    ("The case was closed. (Counsel objected at once.) The end came later.", "(Counsel objected at once.)"),
    ("He waited for an answer. “Yes,” she said, and left the room.", "“Yes,” she said, and left the room."),
])
def test_a_sentence_opened_by_punctuation_starts_with_its_word(segmenter, text, second):
    sentences = [s.strip() for s in segmenter.sentences(text)]
    assert sentences[1].startswith(second.split()[0])


def test_a_huge_paragraph_without_sentence_ends_or_spaces_stays_exact(segmenter, tokenizer, book_text, config):
    no_periods = book_text.replace(".", "").replace("!", "").replace("?", "").replace("\n", " ")
    no_spaces = "".join(no_periods.split())[:150_000]
    text = no_periods + " " + no_spaces  # blocks are cut at 100,000 characters
    segmented = segmenter.segment(text)
    assert "".join(segmented.units) == text
    assert (list(segmented.token_ids), segmented.sentence_ends) == tokenize_units(segmented.units, tokenizer)
    assert max(_token_counts(segmented.units, tokenizer)) < config.max_unit_tokens + 2 * config.min_unit_tokens


def test_word_start_finds_the_nearest_whitespace_like_a_search_back_to_the_lower_bound(book_text):
    import random

    from linkscan.pipeline.sentences import _word_start

    text = book_text[:20_000] + "\t" + "x" * 3_000 + "\n" + book_text[20_000:40_000]
    rng = random.Random(3)
    for _ in range(2_000):
        position = rng.randrange(1, len(text))
        lower = rng.choice([0, rng.randrange(0, position)])
        naive = max(lower, *(text.rfind(space, lower, position) + 1 for space in " \n\t"))
        assert _word_start(text, lower, position) == naive
