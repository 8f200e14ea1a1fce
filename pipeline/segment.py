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


def _regex_starts(text: str, blocks: list[tuple[int, int]]) -> Iterator[int]:
    """Sentence starts after . ! ? (and closing quotes or brackets) followed by whitespace."""
    for start, end in blocks:
        for match in _SENTENCE_END.finditer(text, start, end):
            word = text[text.rfind(" ", start, match.start()) + 1: match.start()].lower()
            if match.group().startswith(".") and word.lstrip("(\"'“‘") in _ABBREVIATIONS:
                continue
            yield match.end()


def _word_start(text: str, lower: int, position: int) -> int:
    """Start of the whitespace-delimited word holding ``position`` (not before ``lower``)."""
    return max(lower, text.rfind(" ", lower, position) + 1, text.rfind("\n", lower, position) + 1,
               text.rfind("\t", lower, position) + 1)


class _PipelineStarts:
    """Sentence starts from a full spaCy pipeline (parser or senter), block by block."""

    def __init__(self, nlp) -> None:
        self.nlp = nlp

    def starts(self, text: str, blocks: list[tuple[int, int]]) -> Iterator[int]:
        docs = self.nlp.pipe((text[start:end] for start, end in blocks), batch_size=64)
        for (start, _), doc in zip(blocks, docs):
            yield from (start + sentence.start_char for sentence in doc.sents)


class _Sentencizer:
    """spaCy's rule-based sentencizer, run only where it can decide something.

    The sentencizer starts a sentence at the first token that is not punctuation after a token
    in its ``punct_chars`` (. ! ? and 120 others). spaCy tokenizes each whitespace-separated word on
    its own, so only words holding one of those characters, and the word or whitespace right after
    them, need spaCy's tokens; they are tokenized once and cached. Whitespace other than a single
    space is a token of its own (not punctuation), as in spaCy. This gives the boundaries of
    ``nlp.pipe`` with a sentencizer at a fraction of the cost (a test checks they agree).
    """

    _CACHE_LIMIT = 200_000

    def __init__(self, nlp) -> None:
        self.tokenizer = nlp.tokenizer
        self.punct_chars = frozenset(nlp.get_pipe("sentencizer").punct_chars)
        self._word = re.compile(r"\S+")
        self._cache: dict[tuple[str, bool], tuple[tuple[int, ...], bool]] = {}
        self._patterns: dict[frozenset[str], re.Pattern] = {}

    def _word_summary(self, word: str, period_open: bool) -> tuple[tuple[int, ...], bool]:
        """Sentence starts inside one word (offsets) and whether a sentence end is open after it."""
        key = (word, period_open)
        summary = self._cache.get(key)
        if summary is None:
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            starts = []
            for token in self.tokenizer(word):
                in_punct = token.text in self.punct_chars
                if period_open and not token.is_punct and not in_punct:
                    starts.append(token.idx)
                    period_open = False
                if in_punct:
                    period_open = True
            summary = self._cache[key] = (tuple(starts), period_open)
        return summary

    def _punct_pattern(self, chars: frozenset[str]) -> re.Pattern:
        # Only the characters present in a text: a class of 128 characters makes re scan slowly.
        pattern = self._patterns.get(chars)
        if pattern is None:
            pattern = self._patterns[chars] = re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")
        return pattern

    def starts(self, text: str, blocks: list[tuple[int, int]]) -> Iterator[int]:
        present = self.punct_chars.intersection("!.?") if text.isascii() else self.punct_chars.intersection(text)
        if not present:
            return
        punct = self._punct_pattern(frozenset(present))
        for start, end in blocks:
            yield from self._block_starts(text, start, end, punct)

    def _block_starts(self, text: str, start: int, end: int, punct: re.Pattern) -> list[int]:
        found: list[int] = []
        position = start  # every word before this is done
        period_open = False  # a sentence end is open at ``position``
        while position < end:
            if period_open:
                # The next token decides: whitespace other than one space, a plain word, or punctuation.
                word = self._word.search(text, position, end)
                if word is None:
                    break
                if word.start() > position and text[position:word.start()] != " ":
                    found.append(position)
                    period_open = False
                    position = word.start()
                    continue
            else:
                hit = punct.search(text, position, end)
                if hit is None:
                    break
                word = self._word.search(text, _word_start(text, position, hit.start()), end)
                while word.end() <= hit.start():  # a word start after rarer whitespace
                    word = self._word.search(text, word.end(), end)
            token_text = word.group()
            if period_open and token_text[0].isalnum() and not self.punct_chars.intersection(token_text):
                found.append(word.start())
                period_open = False
            else:
                offsets, period_open = self._word_summary(token_text, period_open)
                found.extend(word.start() + offset for offset in offsets)
            position = word.end()
        return found


class Segmenter:
    """Cuts cleaned text into retrieval units; ``units(text)`` concatenates back to ``text``."""

    def __init__(self, config: CorpusConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        if config.segmenter == "regex":
            self._find_starts = _regex_starts
        elif config.segmenter == "sentencizer":
            self._find_starts = _Sentencizer(_load_spacy("sentencizer", config.language)).starts
        else:
            self._find_starts = _PipelineStarts(_load_spacy(config.segmenter, config.language)).starts

    # -- sentences ---------------------------------------------------------------------------------
    def _sentence_starts(self, text: str) -> list[int]:
        blocks = list(_blocks(text))
        starts = {start for start, _ in blocks}
        starts.update(self._find_starts(text, blocks))
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
