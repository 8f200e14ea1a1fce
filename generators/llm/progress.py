"""The LLM clients' live numbers as a table: done, in flight, failed, cache hits, tokens, cost.

A generation run's progress (``linkscan.generators.progress``) hands each client's usage tracker to its
board (``register``, passed to the client as ``on_usage``); the board shows their sum.
"""
from __future__ import annotations

import threading

from rich.table import Table

from linkscan.generators.llm.usage import StageUsage, UsageTracker


class ProgressBoard:
    """The sum of every registered tracker, as a rich renderable."""

    def __init__(self, title: str = "LLM requests") -> None:
        self.title = title
        self._trackers: list[UsageTracker] = []
        self._lock = threading.Lock()

    @property
    def has_clients(self) -> bool:
        with self._lock:
            return bool(self._trackers)

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

    def summary(self) -> str:
        """The totals in one line, for logs: ``LLM 1,234 done, 2 in flight, 3 failed, ...``."""
        stages, in_flight = self.totals()
        total = stages["total"]
        return (f"LLM {total.requests + total.cache_hits:,} done, {in_flight:,} in flight, "
                f"{sum(total.failures.values()):,} failed, {total.cache_hits:,} cache hits, "
                f"{total.prompt_tokens + total.completion_tokens:,} tokens, ${total.cost_usd:.4f}")

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
