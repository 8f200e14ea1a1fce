"""Live console progress of an LLM client: done, in flight, failed, cache hits, tokens, cost."""
from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from generators.llm.client import UsageTracker


class UsageView:
    """A rich renderable that reads the tracker each time the display refreshes."""

    def __init__(self, tracker: UsageTracker, title: str = "LLM") -> None:
        self.tracker = tracker
        self.title = title

    def __rich__(self) -> Table:
        table = Table(title=self.title, title_justify="left", box=None, pad_edge=False)
        for column in ("stage", "done", "in flight", "failed", "cache hits", "retries", "tokens", "cost $"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        rows = list(self.tracker.stages.items()) + [("total", self.tracker.total())]
        for name, usage in rows:
            table.add_row(
                name,
                str(usage.requests + usage.cache_hits),
                str(self.tracker.in_flight) if name == "total" else "",
                str(sum(usage.failures.values())),
                str(usage.cache_hits),
                str(usage.retries),
                f"{usage.prompt_tokens + usage.completion_tokens:,}",
                f"{usage.cost_usd:.4f}",
            )
        return table


class LLMProgress:
    """``with LLMProgress(client.usage): ...`` shows the totals live (4 refreshes a second)."""

    def __init__(self, tracker: UsageTracker, console: Console | None = None, title: str = "LLM") -> None:
        self._live = Live(UsageView(tracker, title), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> "LLMProgress":
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.__exit__(*exc_info)
