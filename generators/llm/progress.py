"""Live console progress of the LLM clients: done, in flight, failed, cache hits, tokens, cost.

The CLI wraps a run in ``with show_llm_progress():``; every :class:`LLMClient` created while it
is open (one per shard, in worker threads) registers its usage tracker, and one rich display
shows their sum, refreshed four times a second. Outside that block nothing is displayed.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from generators.llm.client import StageUsage, UsageTracker


class ProgressBoard:
    """The sum of every registered tracker, as a rich renderable."""

    def __init__(self, title: str = "LLM requests") -> None:
        self.title = title
        self._trackers: list[UsageTracker] = []
        self._lock = threading.Lock()

    def register(self, tracker: UsageTracker) -> None:
        with self._lock:
            self._trackers.append(tracker)

    def totals(self) -> tuple[dict[str, StageUsage], int]:
        """Per-stage sums and the number of requests in flight now."""
        with self._lock:
            trackers = list(self._trackers)
        combined = UsageTracker()
        for tracker in trackers:
            combined.add(tracker)
        stages = dict(sorted(combined.stages.items()))
        stages["total"] = combined.total()
        return stages, combined.in_flight

    def __rich__(self) -> Table:
        stages, in_flight = self.totals()
        table = Table(title=f"{self.title} ({in_flight} in flight)", title_justify="left", box=None, pad_edge=False)
        for column in ("stage", "done", "failed", "cache hits", "retries", "tokens", "cost $"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for name, usage in stages.items():
            table.add_row(
                name,
                f"{usage.requests + usage.cache_hits:,}",
                f"{sum(usage.failures.values()):,}",
                f"{usage.cache_hits:,}",
                f"{usage.retries:,}",
                f"{usage.prompt_tokens + usage.completion_tokens:,}",
                f"{usage.cost_usd:.4f}",
            )
        return table


_active: ProgressBoard | None = None


def watch(tracker: UsageTracker) -> None:
    """Show ``tracker`` on the open progress display, if there is one."""
    if _active is not None:
        _active.register(tracker)


@contextmanager
def show_llm_progress(console: Console | None = None) -> Iterator[ProgressBoard]:
    """Display the LLM clients' progress live (on stderr by default) while the block runs."""
    global _active
    board = ProgressBoard()
    console = console or Console(stderr=True)
    previous, _active = _active, board
    try:
        with Live(board, console=console, refresh_per_second=4):
            yield board
    finally:
        _active = previous
        if not console.is_terminal:  # the final table is printed without a line end there
            console.line()
