"""The offline back end: link scoring, template questions and evidence, on real text with planted links."""
from __future__ import annotations

import asyncio
import re

import pytest

from linkscan.generators.base import EvidenceRequest, LinkRequest, QuestionDraft, QuestionRequest
from linkscan.generators.config import OfflineConfig
from linkscan.generators.offline import OfflineBackend
from tests.generators_data import chunk_from_units, dev_document_text, load_tokenizer, units_of

PLANTED_ANCHOR = (
    " Captain Ilse Varenholm had kept the Skerry lighthouse since the winter of 1847, and she logged"
    " every ship that passed the reef."
)
PLANTED_TARGET = (
    " Years later the harbour board found the log of Captain Ilse Varenholm still on its shelf in"
    " the Skerry lighthouse, its last entry dated 1871."
)
ANCHOR_AT, TARGET_AT = 4, 36


@pytest.fixture(scope="module")
def units(dev_corpus, tokenizer_path) -> list[str]:
    """40 real units of a Wharton novel, with two planted units that share a name, a place and a year."""
    tokenizer = load_tokenizer(str(tokenizer_path))
    real = units_of(dev_document_text(dev_corpus, "pg-7517", 30_000), tokenizer)[20:60]
    assert len(real) == 40
    real[ANCHOR_AT] = PLANTED_ANCHOR
    real[TARGET_AT] = PLANTED_TARGET
    return real


def run(coroutine):
    return asyncio.run(coroutine)


def test_planted_long_range_link_is_the_strongest(units):
    backend = OfflineBackend()
    anchor = list(range(2, 7))
    window = [u for u in range(len(units)) if u not in anchor]
    links = run(backend.find_links(LinkRequest("doc-0", units, anchor, window)))
    best = links[0]
    assert (best.source, best.target) == (ANCHOR_AT, TARGET_AT)
    assert {"varenholm", "skerry lighthouse"} <= set(best.terms)
    assert "Varenholm" in best.reason


def test_links_come_only_from_the_window(units):
    backend = OfflineBackend()
    anchor = list(range(2, 7))
    window = [u for u in range(20, 30)]  # the planted target (36) is outside
    links = run(backend.find_links(LinkRequest("doc-0", units, anchor, window)))
    assert all(link.target in window for link in links)
    assert TARGET_AT not in [link.target for link in links]


def test_frequent_words_do_not_link():
    """A term in more units than max_df_fraction (and min_rare_df) allows is not rare and links nothing."""
    backend = OfflineBackend(OfflineConfig(min_link_score=0.0))
    units = [f" Filler sentence number {i} says little of use to anybody here." for i in range(30)]
    for i in range(0, 30, 5):  # "turbine" in 6 of 30 units: more than min_rare_df (3)
        units[i] = f" The turbine was inspected again on day {i + 10}."
    index = backend.index("doc-3", units)
    assert "turbine" not in index.weight
    links = run(backend.find_links(LinkRequest("doc-3", units, [0], [25])))
    assert links == []


def test_shared_name_outweighs_shared_word_of_equal_rarity():
    backend = OfflineBackend()
    filler = [f" Filler sentence number {i} says little of use to anybody here." for i in range(30)]
    units = list(filler)
    units[1] = " The committee met Halloran in the evening."
    units[20] = " Much later Halloran wrote again to the board."
    units[2] = " The committee considered the turbine in the evening."
    units[22] = " Much later the turbine failed in the storm."
    index = backend.index("doc-1", units)
    name_score, name_terms = backend.link_score(index, 1, 20)
    word_score, word_terms = backend.link_score(index, 2, 22)
    assert "halloran" in name_terms and "turbine" in word_terms
    assert name_score > word_score


def test_question_uses_the_link_terms_and_pastes_no_unit(units):
    backend = OfflineBackend()
    anchor = list(range(2, 7))
    window = [u for u in range(len(units)) if u not in anchor]
    link = run(backend.find_links(LinkRequest("doc-0", units, anchor, window)))[0]
    draft = run(backend.write_question(QuestionRequest("doc-0", units, [anchor, [35, 36, 37]], "link", link=link)))
    assert draft.question.endswith("?")
    assert re.search(r"Varenholm|Skerry lighthouse", draft.question)
    words = draft.question.split()
    for unit in units:
        for i in range(len(words) - 7):  # no run of 8 words copied from the text
            assert " ".join(words[i:i + 8]) not in unit


def test_questions_are_deterministic_for_a_seed(units):
    anchor = list(range(2, 7))
    window = [u for u in range(len(units)) if u not in anchor]

    def question(seed: int) -> str:
        backend = OfflineBackend(seed=seed)
        link = run(backend.find_links(LinkRequest("doc-0", units, anchor, window)))[0]
        return run(backend.write_question(QuestionRequest("doc-0", units, [anchor, [36]], "link", link=link))).question

    assert question(0) == question(0)
    assert len({question(seed) for seed in range(8)}) > 1  # the template choice follows the seed


def test_evidence_is_linked_units_plus_neighbours_sharing_terms(units):
    backend = OfflineBackend()
    with_neighbour = list(units)
    with_neighbour[TARGET_AT + 1] = " Nobody else ever kept a log as careful as Varenholm did, the board said."
    draft = QuestionDraft("What did Captain Ilse Varenholm record?", ("varenholm", "skerry lighthouse"))
    candidates = [2, 3, 4, 5, 6, 33, 34, 35, 36, 37, 38, 39]
    evidence = run(backend.pick_evidence(EvidenceRequest("doc-2", with_neighbour, draft, candidates)))
    assert evidence == [ANCHOR_AT, TARGET_AT, TARGET_AT + 1]


def test_names_numbers_and_phrases_are_terms():
    terms = OfflineBackend().unit_terms(
        "In 1847 the Skerry lighthouse keeper met Ilse Varenholm. She kept the harbour log."
    )
    assert terms["1847"].kind == "number"
    assert terms["varenholm"].kind == "name"
    assert terms["lighthouse keeper"].kind == "phrase"
    assert terms["harbour"].kind == "word"
    assert "she" not in terms and "the" not in terms  # stop words


def test_a_name_common_across_the_document_is_no_link_even_where_rare_in_the_chunk(units, tokenizer_path):
    """Document-wide IDF: the planted name recurs in every other chunk of the document, so the
    two planted units share only terms that are common in the document and do not link."""
    tokenizer = load_tokenizer(str(tokenizer_path))
    planted = chunk_from_units(units, tokenizer, doc_id="story", chunk_index=0)
    mentions = [
        f" Captain Ilse Varenholm walked to the Skerry lighthouse again in {1850 + i}." for i in range(40)
    ]
    others = [chunk_from_units(units[:20] + mentions[i:i + 20], tokenizer, doc_id="story", chunk_index=1 + i // 20)
              for i in (0, 20)]
    anchor = list(range(2, 7))
    window = [u for u in range(len(units)) if u not in anchor]

    def strongest_target(backend: OfflineBackend) -> int | None:
        links = run(backend.find_links(LinkRequest(planted.chunk_id, planted.sentences, anchor, window)))
        return links[0].target if links else None

    by_document = OfflineBackend(OfflineConfig(idf_scope="document"))
    by_document.prepare_document([planted, *others])
    assert strongest_target(by_document) != TARGET_AT
    by_chunk = OfflineBackend(OfflineConfig(idf_scope="chunk"))
    by_chunk.prepare_document([planted, *others])
    assert strongest_target(by_chunk) == TARGET_AT


def test_a_forgotten_document_leaves_its_chunks_to_chunk_scope_weights(units, tokenizer_path):
    tokenizer = load_tokenizer(str(tokenizer_path))
    planted = chunk_from_units(units, tokenizer, doc_id="story", chunk_index=0)
    mentions = [f" Captain Ilse Varenholm walked to the Skerry lighthouse again in {1850 + i}." for i in range(40)]
    other = chunk_from_units(units[:20] + mentions, tokenizer, doc_id="story", chunk_index=1)
    backend = OfflineBackend(OfflineConfig(idf_scope="document"))
    backend.prepare_document([planted, other])
    backend.forget_document([planted, other])
    anchor = list(range(2, 7))
    window = [u for u in range(len(units)) if u not in anchor]
    links = run(backend.find_links(LinkRequest(planted.chunk_id, planted.sentences, anchor, window)))
    assert links[0].target == TARGET_AT  # weighed within the chunk again: the planted link is back
