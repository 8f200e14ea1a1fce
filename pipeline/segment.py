"""Segmentation of a cleaned document into retrieval units with their exact tokens.

A retrieval unit is what the scanner scores: consecutive sentences merged until the unit has at
least ``min_unit_tokens`` tokens, with any sentence longer than ``max_unit_tokens`` first split at a
clause boundary (``,`` ``;`` ``:``), else at whitespace, else between tokens. No text is dropped:
the units concatenate back to the input exactly. Whitespace between sentences opens the next unit,
so a unit ends on its last visible character, and that character's token is the unit's end.

Why tokens come out exact without tokenizing twice: cutting a text where a non-space character is
followed by whitespace never cuts through a pre-token of a byte-level BPE tokenizer (GPT-2 /
GPT-NeoX style), so the tokens of the pieces concatenate to the tokens of the pieces joined. Units
are therefore assembled from their pieces' tokens, and only a unit with a join of any other kind
(rare: a sentence break without whitespace, or a cut inside a long word) is tokenized again.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterator

from tokenizers import Tokenizer

from pipeline.config import CorpusConfig
from pipeline.tokenize import encode_texts

# Paragraph breaks always end a sentence (headings, list items and verse lines have no period).
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# spaCy and the regex rule see blocks of at most this many characters (spaCy refuses > 1M).
_MAX_BLOCK_CHARS = 100_000
_SENTENCE_END = re.compile(r"[.!?…]+['\"”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof gen col capt lt sgt rev hon vs etc no vol fig ch pp e.g i.e cf al".split()
)
_CLAUSE_END = (",", ";", ":", ".", "!", "?", ")", "”", "'", '"')
_SAFE_SPACE = (" ", "\n", "\t")


@dataclass(frozen=True)
class SegmentedText:
    """A document's retrieval units and their tokens: ``sentence_ends[i]`` is unit i's last token."""

    units: list[str]
    token_ids: list[int]
    sentence_ends: list[int]


@dataclass
class _Piece:
    text: str
    ids: list[int]
    safe_join: bool  # True when this piece's tokens may be appended to the previous piece's
    exact: bool = True  # False when ids are the sum of parts joined unsafely (retokenize)


@functools.lru_cache(maxsize=4)
def _load_spacy(segmenter: str, language: str | None):
    import spacy

    if segmenter == "sentencizer":
        try:
            nlp = spacy.blank(language or "en")
        except Exception:  # a language spaCy has no tokenizer for: punctuation rules still work
            nlp = spacy.blank("xx")
        nlp.add_pipe("sentencizer")
        return nlp
    try:
        return spacy.load(segmenter)
    except OSError as error:
        raise ValueError(
            f"segmenter {segmenter!r}: spaCy pipeline not installed ({error}); install it, or use "
            "segmenter 'sentencizer' or 'regex'"
        ) from None


def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """Spans of paragraphs (without the break), cut at whitespace to at most _MAX_BLOCK_CHARS."""
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        yield from _cut_block(text, start, match.start())
        start = match.end()
    yield from _cut_block(text, start, len(text))


def _cut_block(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while end - start > _MAX_BLOCK_CHARS:
        cut = text.rfind(" ", start + _MAX_BLOCK_CHARS // 2, start + _MAX_BLOCK_CHARS)
        if cut <= start:
            cut = start + _MAX_BLOCK_CHARS
        yield start, cut
        start = cut
    if end > start:
        yield start, end


class Segmenter:
    """Cuts cleaned text into retrieval units; ``units(text)`` concatenates back to ``text``."""

    def __init__(self, config: CorpusConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self._nlp = None if config.segmenter == "regex" else _load_spacy(config.segmenter, config.language)

    # -- sentences ---------------------------------------------------------------------------------
    def _sentence_starts(self, text: str) -> list[int]:
        blocks = list(_blocks(text))
        starts = {start for start, _ in blocks}
        if self._nlp is None:
            for start, end in blocks:
                for match in _SENTENCE_END.finditer(text, start, end):
                    word = text[text.rfind(" ", start, match.start()) + 1: match.start()].lower()
                    if match.group().startswith(".") and word.lstrip("(\"'“‘") in _ABBREVIATIONS:
                        continue
                    starts.add(match.end())
        else:
            docs = self._nlp.pipe((text[start:end] for start, end in blocks), batch_size=64)
            for (start, _), doc in zip(blocks, docs):
                starts.update(start + sentence.start_char for sentence in doc.sents)
        # Whitespace before a sentence belongs to it; a sentence of whitespace only is no sentence.
        moved = set()
        for start in starts:
            while start > 0 and text[start - 1].isspace():
                start -= 1
            moved.add(start)
        last_visible = len(text.rstrip())
        return sorted(s for s in moved if 0 < s < last_visible) if text else []

    def sentences(self, text: str) -> list[str]:
        """Sentences as spaCy (or the regex rule) finds them, leading whitespace included."""
        bounds = [0, *self._sentence_starts(text), len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    # -- units -------------------------------------------------------------------------------------
    def units(self, text: str) -> list[str]:
        return self.segment(text).units

    def segment(self, text: str) -> SegmentedText:
        """Units of ``text`` with their concatenated token ids and per-unit last-token positions."""
        if not text:
            return SegmentedText([], [], [])
        sentences = self.sentences(text)
        pieces: list[_Piece] = []
        previous_end = ""
        for sentence, ids in zip(sentences, encode_texts(sentences, self.tokenizer)):
            piece = _Piece(sentence, ids, _is_safe_join(previous_end, sentence))
            previous_end = sentence[-1]
            if len(ids) > self.config.max_unit_tokens:
                pieces.extend(self._split_long(piece))
            else:
                pieces.append(piece)
        return self._merge(pieces)

    def _split_long(self, piece: _Piece) -> list[_Piece]:
        """Split an overlong sentence into parts of at most max_unit_tokens, preferring clauses."""
        limit = self.config.max_unit_tokens
        words = _words(piece.text)
        parts: list[_Piece] = []
        for index, (word, ids) in enumerate(zip(words, encode_texts(words, self.tokenizer))):
            safe = piece.safe_join if index == 0 else _is_safe_join(words[index - 1][-1], word)
            if len(ids) > limit:
                parts.extend(self._split_word(_Piece(word, ids, safe)))
            else:
                parts.append(_Piece(word, ids, safe))
        # Greedy packing: fill up to the limit, cutting after the last clause end in the second half.
        packed: list[_Piece] = []
        i = 0
        while i < len(parts):
            total, j = 0, i
            while j < len(parts) and (j == i or total + len(parts[j].ids) <= limit):
                total += len(parts[j].ids)
                j += 1
            cut = j
            if j < len(parts):
                running = 0
                for k in range(i, j):
                    running += len(parts[k].ids)
                    if running * 2 >= limit and parts[k].text.endswith(_CLAUSE_END):
                        cut = k + 1
            packed.append(_join(parts[i:cut]))
            i = cut
        return packed

    def _split_word(self, piece: _Piece) -> list[_Piece]:
        """Cut a run of text without whitespace between tokens (counts are redone after merging)."""
        limit = self.config.max_unit_tokens
        offsets = self.tokenizer.encode(piece.text, add_special_tokens=False).offsets
        cuts = [0]
        for position in range(limit, len(offsets), limit):
            start = offsets[position][0]
            if cuts[-1] < start < len(piece.text):
                cuts.append(start)
        cuts.append(len(piece.text))
        texts = [piece.text[a:b] for a, b in zip(cuts, cuts[1:])]
        return [
            _Piece(part, ids, piece.safe_join if index == 0 else False)
            for index, (part, ids) in enumerate(zip(texts, encode_texts(texts, self.tokenizer)))
        ]

    def _merge(self, pieces: list[_Piece]) -> SegmentedText:
        """Merge consecutive pieces until each unit has at least min_unit_tokens tokens."""
        minimum = self.config.min_unit_tokens
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        count = 0
        for piece in pieces:
            current.append(piece)
            count += len(piece.ids)
            if count >= minimum:
                groups.append(current)
                current, count = [], 0
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
        units = [_join(group) for group in groups]
        # Units with an unsafe join are tokenized again as a whole, so every unit's ids are exact.
        retokenize = [i for i, unit in enumerate(units) if not unit.exact]
        for i, ids in zip(retokenize, encode_texts([units[i].text for i in retokenize], self.tokenizer)):
            units[i].ids = ids
        token_ids: list[int] = []
        sentence_ends: list[int] = []
        for unit in units:
            token_ids.extend(unit.ids)
            sentence_ends.append(len(token_ids) - 1)
        return SegmentedText([unit.text for unit in units], token_ids, sentence_ends)


def _is_safe_join(previous_last_char: str, text: str) -> bool:
    """A join at a non-space -> space transition never splits a pre-token (see module doc)."""
    return not previous_last_char or (text[:1] in _SAFE_SPACE and not previous_last_char.isspace())


def _join(pieces: list[_Piece]) -> _Piece:
    ids = [token for piece in pieces for token in piece.ids]
    exact = all(p.exact for p in pieces) and all(p.safe_join for p in pieces[1:])
    return _Piece("".join(p.text for p in pieces), ids, pieces[0].safe_join, exact)


def _words(text: str) -> list[str]:
    """Text cut before each whitespace run that follows a visible character."""
    cuts = [0] + [m.start() for m in re.finditer(r"(?<=\S)\s", text)] + [len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
