"""Counting what a stage drops, by named reason, so every loss reaches the manifest."""
from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("linkscan")


class Drops:
    """A counter of dropped items by reason (``not_english``, ``duplicate``, ``unreadable``...).

    ``add`` logs one line naming the item, so a user can find what was dropped and why.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, reason: str, where: str | None = None, detail: str | None = None, n: int = 1) -> None:
        self.counts[reason] += n
        if where is not None:
            log.warning("%s: dropped (%s)%s", where, reason, f": {detail}" if detail else "")

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def __bool__(self) -> bool:
        return bool(self.counts)
