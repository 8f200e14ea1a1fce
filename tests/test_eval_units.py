"""Benchmark documents as units (same segmentation as generation) and gold evidence -> units."""
from __future__ import annotations

from pathlib import Path


from linkscan.evaluation.benchmarks import load_plain_benchmark
from linkscan.evaluation.units import EvidenceIndex, map_evidence, segment_document, units_from_texts
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.segment import Segmenter
from tests.eval_data import CONTRACT_UNITS

UNITS = CONTRACT_UNITS[:5]


def test_verbatim_span_maps_to_its_unit_ignoring_case_and_punctuation() -> None:
    match = map_evidence(["governed by the LAWS of the state of Delaware"], UNITS)
    assert match.gold_units == (2,)
    assert match.matched == 1 and match.unmatched == ()


def test_span_across_a_unit_boundary_maps_to_both_units() -> None:
    match = map_evidence(["without any deduction. This agreement is governed"], UNITS)
    assert match.gold_units == (1, 2)


def test_edited_span_maps_by_token_overlap() -> None:
    # reworded and reordered (not verbatim), but most words are the unit's
    match = map_evidence(["either party can terminate this agreement with 90 days of written notice"], UNITS)
    assert match.gold_units == (3,)


def test_span_stitched_with_an_ellipsis_maps_to_both_places() -> None:
    match = map_evidence(["The supplier shall deliver the goods... the term of this agreement is five years"], UNITS)
    assert match.gold_units == (0, 4)


def test_span_absent_from_the_document_is_counted_unmatched() -> None:
    span = "The licensee receives an exclusive worldwide royalty-free licence."
    match = map_evidence(["the term of this agreement is five years", span], UNITS)
    assert match.gold_units == (4,)
    assert match.matched == 1
    assert match.unmatched == (span,)
    assert match.n_spans == 2


def test_overlap_threshold_decides_a_partial_match() -> None:
    # content words: 4 of the span's 7 (deliver goods within thirty) are unit 0's, 4 of its 7:
    # 57% matches at 0.5 and not at 0.6
    span = "deliver the goods within thirty purple elephants dancing"
    assert map_evidence([span], UNITS, min_overlap=0.5).gold_units == (0,)
    assert map_evidence([span], UNITS, min_overlap=0.6).unmatched == (span,)


def test_no_evidence_gives_no_gold_units() -> None:
    match = EvidenceIndex(UNITS).match(None)
    assert match.gold_units == () and match.n_spans == 0


def test_units_from_texts_aligns_every_unit_end(tokenizer) -> None:
    document = units_from_texts("d", UNITS, tokenizer)
    assert len(document.sentence_ends) == len(UNITS)
    start = 0
    for unit, end in zip(UNITS, document.sentence_ends):
        assert tokenizer.decode(document.token_ids[start : end + 1]) == unit
        start = end + 1
    assert document.n_tokens == document.sentence_ends[-1] + 1


def test_benchmark_document_is_segmented_as_in_generation(tokenizer, dev_evalsets: Path) -> None:
    benchmark = load_plain_benchmark(dev_evalsets / "paperqa_4k.questions.jsonl")
    question = benchmark.questions[0]
    text = benchmark.documents[question.doc_id]
    config = CorpusConfig()
    segmenter = Segmenter(config, tokenizer)
    document = segment_document(question.doc_id, text, segmenter)
    assert "".join(document.units) == text
    assert document.units == segmenter.units(text)
    unit_tokens = [b - a for a, b in zip([-1, *document.sentence_ends], document.sentence_ends)]
    # units are merged to at least min_unit_tokens (only a whole document may be shorter)
    assert min(unit_tokens) >= config.min_unit_tokens
    match = map_evidence(question.evidence, document.units)
    assert match.unmatched == ()
    gold_text = "".join(document.units[i] for i in match.gold_units)
    assert "additional knowledge for entities was acquired by supplementing image information" in gold_text
