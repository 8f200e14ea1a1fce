"""Benchmark documents as retrieval units, and gold evidence spans mapped onto those units.

Documents are segmented and tokenized exactly as in generation (``linkscan.pipeline.segment.Segmenter`` and
``linkscan.pipeline.tokenize.tokenize_units``), so the scanner sees the same units it was trained on. A
document is tokenized once and shared by every question asked about it.
"""
from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

_WORD_RE = re.compile(r"\w+", re.UNICODE)
# Where a stitched evidence span may be cut: an ellipsis, or the end of a sentence.
_PIECE_RE = re.compile(r"\.\.\.|\u2026|(?<=[.!?])\s+")
# Fuzzy matching compares content words: shared function words alone must not make a match.
STOPWORDS = frozenset(
    "a an the and or but if then of to in on at by for with from as is are was were be been being "
    "it its this that these those there their they them he she his her we our you your i me my not no "
    "so than too very can will would shall should may might must do does did has have had which who "
    "whom what when where why how all any each other such into about over under between also only".split()
)


def content_words(tokens: list[str]) -> list[str]:
    """The tokens without function words (all tokens when nothing else is left)."""
    kept = [t for t in tokens if t not in STOPWORDS]
    return kept or tokens


@dataclass
class DocumentUnits:
    doc_id: str
    units: list[str]  # retrieval units in document order
    token_ids: list[int] = field(repr=False)  # the whole document's tokens
    sentence_ends: list[int] = field(repr=False)  # sentence_ends[i]: position of unit i's last token

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def __len__(self) -> int:
        return len(self.units)


def units_from_texts(doc_id: str, units: Sequence[str], tokenizer: object) -> DocumentUnits:
    """Tokenize ready-made units (exact alignment) into a :class:`DocumentUnits`."""
    from linkscan.pipeline.tokenize import tokenize_units

    units = list(units)
    token_ids, sentence_ends = tokenize_units(units, tokenizer)
    return DocumentUnits(doc_id=doc_id, units=units, token_ids=list(token_ids), sentence_ends=list(sentence_ends))


def segment_document(doc_id: str, text: str, segmenter: object) -> DocumentUnits:
    """Cut a document into retrieval units, with their tokens, exactly as generation does."""
    segmented = segmenter.segment(text)
    return DocumentUnits(doc_id, list(segmented.units), list(segmented.token_ids), list(segmented.sentence_ends))


def words(text: str) -> list[str]:
    """Lower-cased word tokens: the unit of comparison for evidence matching."""
    return _WORD_RE.findall(text.lower())


@dataclass(frozen=True)
class EvidenceMatch:
    gold_units: tuple[int, ...]  # sorted unit indices covered by any span
    matched: int  # spans mapped to at least one unit
    unmatched: tuple[str, ...]  # spans that matched no unit (reported, never silently lost)

    @property
    def n_spans(self) -> int:
        return self.matched + len(self.unmatched)


class EvidenceIndex:
    """Maps evidence spans of one document onto its units.

    1. Verbatim: the span's word sequence occurs in the document (punctuation, case and whitespace
       ignored); every unit holding one of its words is gold.
    2. Pieces: a span stitched from several places ("A... B") or of several sentences is cut at
       ellipses and sentence ends, and each piece is located on its own (verbatim, else fuzzily);
       it maps when the located pieces hold at least ``min_overlap`` of its words.
    3. Fuzzy, on content words (function words ignored): units with at least ``min_overlap`` of
       their words in the span, or holding at least ``min_overlap`` of the span, are candidates;
       a span is contiguous, so candidates are grouped into runs of nearby units (one-unit gaps
       allowed) and the run covering most of the span wins if it covers at least ``min_overlap``.
    """

    def __init__(self, units: Sequence[str], min_overlap: float = 0.5) -> None:
        self.min_overlap = min_overlap
        self.unit_words = [words(unit) for unit in units]
        self.unit_counts = [Counter(content_words(w)) for w in self.unit_words]
        self._word_unit: list[int] = []
        pieces: list[str] = []
        self._word_starts: list[int] = []
        offset = 0
        for index, unit_words in enumerate(self.unit_words):
            for word in unit_words:
                self._word_starts.append(offset)
                self._word_unit.append(index)
                pieces.append(word)
                offset += len(word) + 1
        self._joined = " " + " ".join(pieces) + " "

    def _verbatim(self, span_words: list[str]) -> list[int] | None:
        needle = " " + " ".join(span_words) + " "
        at = self._joined.find(needle)
        if at < 0:
            return None
        # _joined starts with a space, so a match at `at` begins with the word at offset `at` of the join
        first = bisect.bisect_left(self._word_starts, at)
        last = first + len(span_words) - 1
        return sorted(set(self._word_unit[first : last + 1]))

    def _fuzzy(self, span_words: list[str]) -> list[int] | None:
        span = Counter(content_words(span_words))
        span_total = sum(span.values())
        candidates = []
        for index, counts in enumerate(self.unit_counts):
            unit_total = sum(counts.values())
            if not unit_total:
                continue
            common = sum((counts & span).values())
            if common / unit_total >= self.min_overlap or common / span_total >= self.min_overlap:
                candidates.append(index)
        runs: list[list[int]] = []
        for index in candidates:
            if runs and index - runs[-1][-1] <= 2:
                runs[-1].append(index)
            else:
                runs.append([index])
        best, best_cover = None, 0.0
        for run in runs:
            covered = Counter()
            for index in run:
                covered |= self.unit_counts[index]
            cover = sum((covered & span).values()) / span_total
            if cover > best_cover:
                best, best_cover = run, cover
        if best is None or best_cover < self.min_overlap:
            return None
        return best

    def _locate(self, span_words: list[str]) -> list[int] | None:
        return self._verbatim(span_words) or self._fuzzy(span_words)

    def _pieces(self, span: str) -> list[int] | None:
        """Spans stitched from several places ("A... B", or sentences cut apart): locate each
        sentence-sized piece on its own; matched when the located pieces hold enough of the span."""
        pieces = [words(p) for p in _PIECE_RE.split(span)]
        pieces = [p for p in pieces if p]
        if len(pieces) < 2:
            return None
        hit: set[int] = set()
        located = 0
        for piece in pieces:
            units = self._locate(piece)
            if units:
                hit.update(units)
                located += len(piece)
        if located < self.min_overlap * sum(len(p) for p in pieces):
            return None
        return sorted(hit)

    def match(self, spans: Sequence[str] | None) -> EvidenceMatch:
        gold: set[int] = set()
        matched = 0
        unmatched: list[str] = []
        for span in spans or ():
            span_words = words(span)
            hit = (self._verbatim(span_words) or self._pieces(span) or self._fuzzy(span_words)) if span_words else None
            if hit:
                gold.update(hit)
                matched += 1
            else:
                unmatched.append(span)
        return EvidenceMatch(gold_units=tuple(sorted(gold)), matched=matched, unmatched=tuple(unmatched))


def map_evidence(spans: Sequence[str] | None, units: Sequence[str], min_overlap: float = 0.5) -> EvidenceMatch:
    """Gold unit indices for evidence spans (see :class:`EvidenceIndex`), with the unmatched spans."""
    return EvidenceIndex(units, min_overlap).match(spans)
