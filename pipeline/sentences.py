"""Sentences of a cleaned text: spaCy's sentencizer rule (fast), a full spaCy pipeline, or a regex.

``SentenceSplitter(kind, language).sentences(text)`` cuts ``text`` into sentences that concatenate
back to it, each with the whitespace before it. Paragraph breaks always end a sentence; a start
that spaCy puts inside a word after nothing but punctuation ("(C", "“Yes", "§1") moves to the
word's start. ``linkscan.pipeline.segment`` merges the sentences into retrieval units.
"""
from __future__ import annotations

import functools
import re
from typing import Iterator

# Paragraph breaks always end a sentence (headings, list items and verse lines have no period).
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# spaCy and the regex rule see blocks of at most this many characters (spaCy refuses > 1M).
_MAX_BLOCK_CHARS = 100_000
_SENTENCE_END = re.compile(r"[.!?…]+['\"”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof gen col capt lt sgt rev hon vs etc no vol fig ch pp e.g i.e cf al".split()
)
_PUNCT_FIRST_WORD = re.compile(r"(?<!\S)[^\w\s]\S*")
_PLAIN_SENTENCE_END = re.compile(r"[A-Z]?[a-z]+(?:-[a-z]+)*[.!?][\"”’')\]]*")

def _blank_sentencizer(language: str | None):
    import spacy

    try:
        nlp = spacy.blank(language or "en")
    except Exception:  # a language spaCy has no tokenizer for: punctuation rules still work
        nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    return nlp


@functools.lru_cache(maxsize=4)
def _load_pipeline(segmenter: str):
    import spacy

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
    """Start of the whitespace-delimited word holding ``position`` (not before ``lower``).

    The search looks back through a window that grows only while no whitespace is found, so it
    costs the word's length, not the distance to ``lower`` (which made a 50 MB document quadratic).
    """
    window = 64
    while True:
        low = max(lower, position - window)
        found = max(text.rfind(" ", low, position), text.rfind("\n", low, position), text.rfind("\t", low, position))
        if found >= 0:
            return found + 1
        if low == lower:
            return lower
        window *= 8


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

    def __init__(self, make_nlp) -> None:
        self._make_nlp = make_nlp
        nlp = make_nlp()
        self.tokenizer = nlp.tokenizer
        self.punct_chars = frozenset(nlp.get_pipe("sentencizer").punct_chars)
        self._special = frozenset(self.tokenizer.rules or ())
        self._word = re.compile(r"\S+")
        self._cache: dict[tuple[str, bool], tuple[tuple[int, ...], bool]] = {}
        self._patterns: dict[frozenset[str], tuple[re.Pattern, re.Pattern]] = {}

    def _word_summary(self, word: str, period_open: bool) -> tuple[tuple[int, ...], bool]:
        """Sentence starts inside one word (offsets) and whether a sentence end is open after it."""
        summary = self._cache.get((word, period_open))
        if summary is None:
            self._tokenize([word])
            summary = self._cache[(word, period_open)]
        return summary

    def _tokenize(self, words: list[str]) -> None:
        """Run spaCy's tokenizer over words joined by spaces (one Doc for many words: spaCy
        tokenizes space-separated substrings independently) and cache each word's summaries."""
        if len(self._cache) + 2 * len(words) > self._CACHE_LIMIT:
            # spaCy's vocabulary keeps every string it has seen; a fresh tokenizer with the cache
            # keeps memory flat however large the corpus.
            self._cache.clear()
            self.tokenizer = self._make_nlp().tokenizer
        doc = self.tokenizer(" ".join(words))
        tokens = iter(doc)
        token = next(tokens, None)
        word_start = 0
        for word in words:
            word_end = word_start + len(word)
            parts = []
            while token is not None and token.idx < word_end:
                parts.append((token.idx - word_start, token.is_punct, token.text in self.punct_chars))
                token = next(tokens, None)
            for entry_open in (False, True):
                period_open = entry_open
                starts = []
                for offset, is_punct, in_punct in parts:
                    if period_open and not is_punct and not in_punct:
                        starts.append(offset)
                        period_open = False
                    if in_punct:
                        period_open = True
                self._cache[(word, entry_open)] = (tuple(starts), period_open)
            word_start = word_end + 1

    def _patterns_for(self, chars: frozenset[str]) -> tuple[re.Pattern, re.Pattern]:
        """A pattern for one of ``chars`` and one for a word holding one (only the characters present
        in a text: a class of all 128 makes re scan slowly)."""
        patterns = self._patterns.get(chars)
        if patterns is None:
            group = "".join(re.escape(c) for c in sorted(chars))
            patterns = self._patterns[chars] = (re.compile(f"[{group}]"), re.compile(rf"(?<!\S)[^\s{group}]*[{group}]\S*"))
        return patterns

    def starts(self, text: str, blocks: list[tuple[int, int]]) -> Iterator[int]:
        present = self.punct_chars.intersection("!.?") if text.isascii() else self.punct_chars.intersection(text)
        if not present:
            return
        punct, punct_word = self._patterns_for(frozenset(present))
        missing = []
        # Words that can decide a sentence start: those holding an end mark, and those opening with
        # punctuation (a quote or bracket after an end mark stays in the sentence before).
        for word in set(punct_word.findall(text)).union(_PUNCT_FIRST_WORD.findall(text)):
            if (word, False) in self._cache:
                continue
            if _PLAIN_SENTENCE_END.fullmatch(word) and not self._special.intersection(_plain_word_keys(word)):
                # "word." (also "well-known!" and "word.”") splits into words, hyphens, its end mark
                # and closing quotes, unless a tokenizer exception covers a part; checked against
                # spaCy on all 51,000 such words of the dev corpora and evalsets.
                self._cache[(word, False)] = ((), True)
                self._cache[(word, True)] = ((0,), True)
            else:
                missing.append(word)
        for i in range(0, len(missing), 5000):
            self._tokenize(missing[i:i + 5000])
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
                if offsets:
                    found.extend(word.start() + offset for offset in offsets)
            position = word.end()
        return found


def _plain_word_keys(word: str) -> tuple[str, ...]:
    """The strings a spaCy tokenizer exception would have to match to change how a plain word
    with an end mark (see _PLAIN_SENTENCE_END) is split."""
    core = word.rstrip("\"”’')]")
    stem = core[:-1]
    last = stem.rsplit("-", 1)[-1]
    return word, core, stem, stem.lower(), last + core[-1], last.lower() + core[-1], last, last.lower()


class SentenceSplitter:
    """``kind``: "sentencizer" (spaCy's rule, applied where it can decide), "regex", or the name of
    an installed spaCy pipeline (its parser or senter)."""

    def __init__(self, kind: str = "sentencizer", language: str | None = "en") -> None:
        if kind == "regex":
            self._find_starts = _regex_starts
        elif kind == "sentencizer":
            self._find_starts = _Sentencizer(functools.partial(_blank_sentencizer, language)).starts
        else:
            self._find_starts = _PipelineStarts(_load_pipeline(kind)).starts

    def starts(self, text: str) -> list[int]:
        """Where sentences start (after the first), each at the whitespace before its first visible character."""
        blocks = list(_blocks(text))
        starts = {start for start, _ in blocks}
        starts.update(self._find_starts(text, blocks))
        # A start inside a word after nothing but punctuation ("(C", "“Yes", "§1") moves to the
        # word's start; whitespace before a sentence belongs to it; a sentence of whitespace only is
        # no sentence.
        moved = set()
        for start in starts:
            if 0 < start < len(text) and not text[start - 1].isspace() and not text[start].isspace():
                word_start = _word_start(text, 0, start)
                if not any(char.isalnum() for char in text[word_start:start]):
                    start = word_start
            while start > 0 and text[start - 1].isspace():
                start -= 1
            moved.add(start)
        last_visible = len(text.rstrip())
        return sorted(s for s in moved if 0 < s < last_visible) if text else []

    def sentences(self, text: str) -> list[str]:
        """Sentences as spaCy (or the regex rule) finds them, leading whitespace included."""
        bounds = [0, *self.starts(text), len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
