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

import bisect
import itertools
import re
from array import array
from dataclasses import dataclass
from typing import Iterator, Sequence

from tokenizers import Tokenizer

from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.sentences import SentenceSplitter
from linkscan.pipeline.tokenize import encode_texts

# Sentences are tokenized in batches of about this many characters (bounded memory, same tokens).
_ENCODE_BATCH_CHARS = 1_000_000
# Token ids in a compact array: unsigned 32-bit ("I" is at least 2 bytes by the C standard, 4 on
# every platform we run on; checked at import so a vocabulary id never wraps).
_TOKEN_TYPE = "I"
assert array(_TOKEN_TYPE).itemsize >= 4
_CLAUSE_END = frozenset(",;:.!?)”'\"")
_SAFE_SPACE = frozenset(" \n\t")
_WORD_CUT = re.compile(r"(?<=\S)\s")  # where a word ends and whitespace begins


@dataclass(frozen=True)
class SegmentedText:
    """A document's retrieval units and their tokens: ``sentence_ends[i]`` is unit i's last token.

    ``token_ids`` is a compact ``array`` (4 bytes a token, not a Python int each: 12M tokens of a
    50 MB document take 48 MB, not 400); slices and ``list(...)`` read it like a list."""

    units: list[str]
    token_ids: Sequence[int]
    sentence_ends: list[int]


class Segmenter:
    """Cuts cleaned text into retrieval units; ``units(text)`` concatenates back to ``text``."""

    def __init__(self, config: CorpusConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self._splitter = SentenceSplitter(config.segmenter, config.language)

    def sentences(self, text: str) -> list[str]:
        """Sentences as spaCy (or the regex rule) finds them, leading whitespace included."""
        return self._splitter.sentences(text)

    # -- units -------------------------------------------------------------------------------------
    def units(self, text: str) -> list[str]:
        return self.segment(text).units

    def segment(self, text: str) -> SegmentedText:
        """Units of ``text`` with their concatenated token ids and per-unit last-token positions."""
        if not text:
            return SegmentedText([], [], [])
        sentences = self.sentences(text)
        limit = self.config.max_unit_tokens
        # Pieces: sentences, or parts of overlong ones; joins[i] says piece i's tokens may follow
        # piece i-1's as they are (a cut at a visible-character -> whitespace transition).
        texts: list[str] = []
        ids: list[array] = []
        joins: list[bool] = []
        previous = ""
        for sentence, encoding in self._encoded(sentences):
            safe = not previous or (sentence[0] in _SAFE_SPACE and not previous[-1].isspace())
            previous = sentence
            sentence_ids = encoding.ids
            if len(sentence_ids) <= limit:
                texts.append(sentence)
                ids.append(array(_TOKEN_TYPE, sentence_ids))
                joins.append(safe)
                continue
            for index, (part, part_ids, part_safe) in enumerate(self._split_long(sentence, sentence_ids, encoding.offsets)):
                texts.append(part)
                ids.append(array(_TOKEN_TYPE, part_ids))
                joins.append(safe if index == 0 else part_safe)
        return self._merge(texts, ids, joins)

    def _encoded(self, sentences: list[str]) -> Iterator[tuple[str, object]]:
        """(sentence, its encoding) pairs, encoded in batches of about _ENCODE_BATCH_CHARS: a
        tokenizer Encoding holds offsets, token strings and masks for every token, so encoding a
        50 MB document in one call took gigabytes; each sentence is encoded on its own either way."""
        batch: list[str] = []
        size = 0
        for sentence in sentences:
            batch.append(sentence)
            size += len(sentence)
            if size >= _ENCODE_BATCH_CHARS:
                yield from zip(batch, self.tokenizer.encode_batch(batch, add_special_tokens=False))
                batch, size = [], 0
        if batch:
            yield from zip(batch, self.tokenizer.encode_batch(batch, add_special_tokens=False))

    def _split_long(self, sentence: str, sentence_ids: list[int], offsets: list[tuple[int, int]]) -> list[tuple[str, list[int], bool]]:
        """An overlong sentence as parts of at most max_unit_tokens: (text, ids, safe join) each.

        Parts end at whitespace, preferably after a clause (``,`` ``;`` ``:`` ...) once half the
        limit is reached. Their tokens are sliced from the sentence's: a token belongs to the word
        its (whitespace-trimmed) start offset falls in, and no token straddles a word cut.
        """
        limit = self.config.max_unit_tokens
        cuts = [0, *(m.start() for m in _WORD_CUT.finditer(sentence)), len(sentence)]
        token_at = _token_positions(cuts, offsets, len(sentence_ids))
        if token_at is None:  # offsets we cannot place: count each word's tokens instead
            counts = [len(w) for w in encode_texts([sentence[x:y] for x, y in zip(cuts, cuts[1:])], self.tokenizer)]
            token_at = [0, *itertools.accumulate(counts)]
        words = len(cuts) - 1
        parts: list[tuple[str, list[int], bool]] = []
        i = 0
        while i < words:
            j = bisect.bisect_right(token_at, token_at[i] + limit) - 1
            if j <= i:  # one word over the limit: cut it between tokens
                parts.extend(self._split_word(sentence[cuts[i]:cuts[i + 1]]))
                i += 1
                continue
            if j < words:
                for k in range(j, i, -1):
                    if (token_at[k] - token_at[i]) * 2 < limit:
                        break
                    if sentence[cuts[k] - 1] in _CLAUSE_END:
                        j = k
                        break
            parts.append((sentence[cuts[i]:cuts[j]], sentence_ids[token_at[i]:token_at[j]], True))
            i = j
        return parts

    def _split_word(self, word: str) -> list[tuple[str, list[int], bool]]:
        """Cut a run of text without whitespace every max_unit_tokens tokens.

        Each part is tokenized on its own; the joins between parts are marked unsafe, so a unit
        holding two of them is tokenized again as a whole.
        """
        limit = self.config.max_unit_tokens
        offsets = self.tokenizer.encode(word, add_special_tokens=False).offsets
        cuts = [0]
        for position in range(limit, len(offsets), limit):
            start = offsets[position][0]
            if cuts[-1] < start < len(word):
                cuts.append(start)
        cuts.append(len(word))
        texts = [word[a:b] for a, b in zip(cuts, cuts[1:])]
        return [(part, part_ids, index == 0) for index, (part, part_ids) in
                enumerate(zip(texts, encode_texts(texts, self.tokenizer)))]

    def _merge(self, texts: list[str], ids: list[array], joins: list[bool]) -> SegmentedText:
        """Merge consecutive pieces until each unit has at least min_unit_tokens tokens."""
        minimum = self.config.min_unit_tokens
        unit_ends: list[int] = []
        count = 0
        for index, piece_ids in enumerate(ids):
            count += len(piece_ids)
            if count >= minimum:
                unit_ends.append(index + 1)
                count = 0
        if count or not unit_ends:  # a short tail joins the unit before it
            if unit_ends:
                unit_ends[-1] = len(ids)
            else:
                unit_ends.append(len(ids))
        units: list[str] = []
        token_ids = array(_TOKEN_TYPE)
        sentence_ends: list[int] = []
        start = 0
        for end in unit_ends:
            unit = texts[start] if end - start == 1 else "".join(texts[start:end])
            if all(joins[start + 1:end]):
                for piece_ids in ids[start:end]:
                    token_ids.extend(piece_ids)
            else:  # a join that may cut a token: tokenize the unit as a whole
                token_ids.extend(self.tokenizer.encode(unit, add_special_tokens=False).ids)
            units.append(unit)
            sentence_ends.append(len(token_ids) - 1)
            start = end
        return SegmentedText(units, token_ids, sentence_ends)


def _token_positions(cuts: list[int], offsets: list[tuple[int, int]], n_tokens: int) -> list[int] | None:
    """Index of the first token at or after each character cut, from tokens' start offsets."""
    positions = [0]
    token = 0
    for cut in cuts[1:-1]:
        while token < n_tokens and offsets[token][0] < cut:
            token += 1
        positions.append(token)
    positions.append(n_tokens)
    if any(b <= a for a, b in zip(positions, positions[1:])):
        return None  # a word without a token of its own: offsets are not what we assume
    return positions
