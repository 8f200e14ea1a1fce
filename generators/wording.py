"""How much two texts share in wording: the checks that tell a real link, question or reason from a
copy or a guess, with no model.

Words are compared by a light stem (lower case, possessive and common inflections off), so
"salesmen's" and "salesman" stay apart but "licences" and "licence", "cited" and "cites" meet.
Only content words count: not stop words, not words that name nothing ("answer", "described").
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, Sequence

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,:]\d+)*")
_SUFFIXES = ("ing", "ed", "es", "s")

# Words that say nothing about a document: a question made only of these and stop words ("What is
# the answer to this question?", "What is described here?") asks about nothing.
GENERIC_WORDS = frozenset(
    "answer answers question questions information detail details thing things something anything "
    "described describe mentioned mention mentions said says say stated example examples point points "
    "main topic topics idea ideas part parts case fact facts way ways kind type reason reasons "
    "happen happened happens important key specific given following above below here there".split()
)


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(word.lower() for word in STOP_WORDS)


def words(text: str) -> list[str]:
    """Every word and number of ``text``, lower-cased, in order (apostrophes and hyphens kept inside)."""
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = word.rstrip("'")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    if word.endswith("e") and len(word) >= 4:  # "licence" meets "licences", "cite" meets "cited"
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """The words of ``text`` that name something: not stop words, not generic words, not one or
    two letters unless an acronym (numbers of any length count)."""
    stop = _stop_words()
    found = []
    for token in _WORD.findall(text):
        word = token.lower().replace("’", "'")
        # Two-letter words count only as acronyms ("IP", "UK"); numbers of any length count.
        if word not in stop and word not in GENERIC_WORDS and (len(word) > 2 or word[0].isdigit() or token.isupper()
                                                                and len(token) == 2):
            found.append(word)
    return found


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


def mentions(text: str, phrase: str) -> bool:
    """Whether ``text`` names what ``phrase`` names: at least half of the phrase's content words
    (and at least one) occur in the text."""
    wanted = content_stems(phrase)
    if not wanted:
        return False
    return 2 * len(wanted & content_stems(text)) >= len(wanted)


def copied_share(text: str, source: str, n: int = 4) -> float:
    """The share of ``text``'s runs of ``n`` consecutive words that occur in ``source`` too (0 for a
    text of fewer than ``n`` words)."""
    mine = words(text)
    if len(mine) < n:
        return 0.0
    theirs = words(source)
    source_grams = {tuple(theirs[i:i + n]) for i in range(len(theirs) - n + 1)}
    grams = [tuple(mine[i:i + n]) for i in range(len(mine) - n + 1)]
    return sum(g in source_grams for g in grams) / len(grams)


def is_copy(text: str, sources: Iterable[str], share: float = 0.6) -> bool:
    """Whether ``text`` is mostly a run of words taken from one of ``sources``."""
    return any(copied_share(text, source) >= share for source in sources)


def restates(question: str, unit: str, share: float = 0.75, min_words: int = 6) -> bool:
    """Whether ``question`` is ``unit`` (a sentence of at least ``min_words`` content words) turned
    into a question, in whatever order: it holds nearly every content word of the unit and next to
    nothing else. (A question that describes a thing by one sentence and asks what another says
    holds the first sentence's words too, and the other's besides.)"""
    wanted = content_stems(unit)
    if len(wanted) < min_words:
        return False
    asked = content_stems(question)
    extra = len(asked - wanted)
    return len(wanted & asked) >= share * len(wanted) and extra <= max(1, len(asked) // 8)


def one_sided(question: str, side_a: Sequence[str], side_b: Sequence[str]) -> str | None:
    """Which side (``"a"`` or ``"b"``) a two-passage question takes nothing from, or None.

    A question needs both passages only if it names something of each beyond what they share:
    a content word found on side A and not on side B, and one found on side B and not on side A.
    """
    a, b = content_stems(" ".join(side_a)), content_stems(" ".join(side_b))
    asked = content_stems(question)
    if not asked & (a - b):
        return "a"
    if not asked & (b - a):
        return "b"
    return None


def only_in(side: Sequence[str], other: Sequence[str], k: int = 5) -> list[str]:
    """Up to ``k`` content words of ``side`` that ``other`` lacks, longest first (as written)."""
    theirs = content_stems(" ".join(other))
    seen, found = set(), []
    for word in sorted(content_words(" ".join(side)), key=lambda w: (-len(w), w)):
        if stem(word) not in theirs and stem(word) not in seen:
            seen.add(stem(word))
            found.append(word)
    return found[:k]
