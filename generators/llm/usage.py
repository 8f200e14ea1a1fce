"""Token, cost and request accounting of the LLM clients, per stage (links, question, evidence).

A client counts into its own ``UsageTracker``; shards add theirs up for the manifest
(``merge_usage``), and a progress display sums the live ones.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class StageUsage:
    requests: int = 0  # answers received from the server (paid)
    cache_hits: int = 0  # answers served from the cache (free)
    attempts: int = 0  # HTTP attempts, retries included
    retries: int = 0
    retry_reasons: Counter = field(default_factory=Counter)  # failed attempts that were retried, by reason
    failures: Counter = field(default_factory=Counter)  # requests given up on, by reason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # tokens of cache hits, which cost nothing this time
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        fields = {name: getattr(self, name) for name in _COUNTS}
        return {**fields, "retry_reasons": dict(sorted(self.retry_reasons.items())),
                "failures": dict(sorted(self.failures.items())), "cost_usd": round(self.cost_usd, 6)}

    @classmethod
    def from_dict(cls, values: dict) -> "StageUsage":
        return cls(**{**values, "retry_reasons": Counter(values.get("retry_reasons", {})),
                      "failures": Counter(values.get("failures", {}))})

    def add(self, other: "StageUsage") -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd
        self.retry_reasons.update(other.retry_reasons)
        self.failures.update(other.failures)


_COUNTS = ("requests", "cache_hits", "attempts", "retries", "prompt_tokens", "completion_tokens", "cached_tokens")


class UsageTracker:
    """Per-stage totals plus the live numbers the progress display shows."""

    def __init__(self) -> None:
        self.stages: dict[str, StageUsage] = {}
        self.in_flight = 0

    def stage(self, name: str) -> StageUsage:
        if name not in self.stages:
            self.stages[name] = StageUsage()
        return self.stages[name]

    def add(self, other: "UsageTracker") -> None:
        for name, usage in list(other.stages.items()):
            self.stage(name).add(usage)
        self.in_flight += other.in_flight

    def total(self) -> StageUsage:
        total = StageUsage()
        for usage in self.stages.values():
            total.add(usage)
        return total

    def as_dict(self) -> dict:
        """``{"stages": {stage: totals}, "total": totals}``, ready for the manifest."""
        return {
            "stages": {name: usage.as_dict() for name, usage in sorted(self.stages.items())},
            "total": self.total().as_dict(),
        }


def merge_usage(parts: list[dict]) -> dict:
    """Add up ``UsageTracker.as_dict()`` results (one per shard) into one of the same shape."""
    combined = UsageTracker()
    for part in parts:
        for name, usage in part.get("stages", {}).items():
            combined.stage(name).add(StageUsage.from_dict(usage))
    return combined.as_dict()
