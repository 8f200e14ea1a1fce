"""Client-side rate limits: a token bucket per budget (requests/minute, tokens/minute).

A bucket holds at most ``per_minute`` units and refills continuously at ``per_minute / 60`` per
second. ``acquire(n)`` waits until ``n`` units are there and takes them; waiters are served in
arrival order, so a large request cannot be starved by small ones. A request larger than the
whole bucket waits for a full bucket and drives it negative, so it is slowed, never refused.
``refund`` returns units reserved but not spent (the token estimate was above the real usage).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"rate limit {per_minute}/min: must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # units per second
        self._clock = clock
        self._level = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 when they are there now)."""
        self._refill()
        needed = min(amount, self.capacity) - self._level
        return max(0.0, needed / self.rate)

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount`` units, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:  # FIFO: asyncio.Lock wakes waiters in order
            while True:
                delay = self.wait_time(amount)
                if delay <= 0:
                    self._level -= amount
                    return waited
                await asyncio.sleep(delay)
                waited += delay

    def refund(self, amount: float) -> None:
        if amount > 0:
            self._refill()
            self._level = min(self.capacity, self._level + amount)


class RateLimiter:
    """Requests/minute and tokens/minute together; either may be None (no limit)."""

    def __init__(self, rpm: int | None, tpm: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock) if tpm else None

    async def acquire(self, tokens: int) -> None:
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(tokens)

    def settle(self, reserved: int, used: int) -> None:
        """Give back the tokens reserved beyond what the request really used."""
        if self.tokens is not None:
            self.tokens.refund(reserved - used)
