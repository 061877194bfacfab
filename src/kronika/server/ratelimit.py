"""Per-credential rate limits: one token bucket per principal (or client IP when anonymous).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each request
takes one. An empty bucket answers with how long until a token is back, which becomes the
429's ``Retry-After``. Buckets live in this process only: behind N replicas a credential
gets up to N times the rate, which is the usual trade for keeping replicas stateless.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["TokenBuckets"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """Token buckets by key, at most ``max_keys`` of them (least recently used go first)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """A rate of 0 turns limiting off."""
        return self.rate > 0

    def take(self, key: str, now: float | None = None) -> float | None:
        """Take a token for ``key``: ``None`` if granted, else seconds until one is free."""
        if not self.enabled:
            return None
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate
