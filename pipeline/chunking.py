"""Cutting a document's retrieval units into chunks of at most ``chunk_tokens`` tokens."""
from __future__ import annotations

import math
from typing import Sequence


def chunk_spans(unit_tokens: Sequence[int], chunk_tokens: int) -> list[tuple[int, int]]:
    """[start, end) unit ranges of chunks of at most ``chunk_tokens`` tokens, cut at unit boundaries.

    Chunks are balanced: each aims at an equal share of the tokens still left, so a document
    yields no tiny last chunk (greedy packing, as in the paper, leaves one). A single unit longer
    than ``chunk_tokens`` becomes a chunk of its own; callers check for it.
    """
    spans: list[tuple[int, int]] = []
    remaining = sum(unit_tokens)
    start = 0
    while start < len(unit_tokens):
        target = remaining / math.ceil(remaining / chunk_tokens)
        size = unit_tokens[start]
        end = start + 1
        while end < len(unit_tokens):
            grown = size + unit_tokens[end]
            # Take the next unit while it fits and brings the chunk nearer to its target size.
            if grown > chunk_tokens or abs(grown - target) > abs(size - target):
                break
            size = grown
            end += 1
        spans.append((start, end))
        remaining -= size
        start = end
    return spans
