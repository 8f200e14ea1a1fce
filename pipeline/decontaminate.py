"""Decontamination: find chunks that share word n-grams with evaluation documents.

Evaluation documents become a sorted array of 64-bit hashes of their lower-cased word n-grams
(13 words by default, as in GPT-3's decontamination). A chunk's overlap is the fraction of its
units that start an n-gram found in that array; the paper dropped training examples with more
than 1% sentence overlap with its test sets.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so the rolling hash mixes every position
_SALT_PROBE = "linkscan.decontaminate"  # its hash changes with the process's string-hash salt


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_hashes(words: Sequence[str], n: int) -> np.ndarray:
    """uint64 hashes of every run of ``n`` consecutive words (empty when there are fewer)."""
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    # Python's string hash: salted per process, but an index is built and queried in one process.
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    count = len(words) - n + 1
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            hashes = hashes * _MULTIPLIER + ids[k: k + count]
    return hashes


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # Sorting is several times faster than np.unique's hash table on millions of uint64 values.
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


class NgramIndex:
    """The word n-grams of a set of evaluation documents, for overlap queries."""

    def __init__(self, hashes: np.ndarray, n: int, documents: int) -> None:
        self.hashes = _sorted_unique(hashes.astype(np.uint64))
        self.n = n
        self.documents = documents
        self._salt = hash(_SALT_PROBE)

    @classmethod
    def from_texts(cls, texts: Iterable[str], n: int) -> "NgramIndex":
        arrays = []
        documents = 0
        for text in texts:
            arrays.append(ngram_hashes(_words(text), n))
            documents += 1
        hashes = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint64)
        return cls(hashes, n, documents)

    def __len__(self) -> int:
        return len(self.hashes)

    def contaminated_units(self, units: Sequence[str]) -> list[int]:
        """Indices of units where an n-gram shared with the evaluation documents starts.

        N-grams run across unit boundaries, so a passage copied from an evaluation document is
        found however the units cut it.
        """
        if self._salt != hash(_SALT_PROBE):
            raise RuntimeError(
                "NgramIndex was built in another process (string hashes differ); build it where it is "
                "used, with linkscan.pipeline.corpus.build_decontamination_index"
            )
        words: list[str] = []
        owner: list[int] = []
        for index, unit in enumerate(units):
            unit_words = _words(unit)
            words.extend(unit_words)
            owner.extend([index] * len(unit_words))
        hashes = ngram_hashes(words, self.n)
        if not len(hashes) or not len(self.hashes):
            return []
        positions = np.searchsorted(self.hashes, hashes)
        positions[positions == len(self.hashes)] = 0
        found = self.hashes[positions] == hashes
        return sorted({owner[i] for i in np.flatnonzero(found)})

    def overlap(self, units: Sequence[str]) -> float:
        """Fraction of ``units`` that share an n-gram with the evaluation documents."""
        return len(self.contaminated_units(units)) / len(units) if units else 0.0


def index_cache_key(paths: Sequence[Path]) -> tuple:
    """Paths with their sizes and modification times, so a changed file is indexed again."""
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.exists())
