"""Retry policies: how long to wait before each new attempt. Pure arithmetic, no sleeping."""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass

from kronika.errors import ValidationError

__all__ = ["Backoff", "RetryPolicy"]


class Backoff(enum.Enum):
    """How the delay grows from one attempt to the next."""

    FIXED = "fixed"
    """Always ``initial_delay``."""
    LINEAR = "linear"
    """``initial_delay * attempt``."""
    EXPONENTIAL = "exponential"
    """``initial_delay * factor ** (attempt - 1)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounded retries with growing, jittered delays (capped by ``max_delay``)."""

    max_attempts: int = 5
    """Attempts in all, the first one included (1 means no retry)."""
    initial_delay: float = 0.01
    """Seconds before the second attempt."""
    factor: float = 2.0
    """Growth per attempt for exponential backoff."""
    max_delay: float = 1.0
    """No delay is longer than this, jitter included."""
    backoff: Backoff = Backoff.EXPONENTIAL
    """Fixed, linear or exponential growth."""
    jitter: bool = True
    """Randomise each delay between half and all of its value, so clients spread out."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValidationError("must be an integer >= 1", "max_attempts")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValidationError("delays must not be negative", "initial_delay")
        if self.factor < 1:
            raise ValidationError("must be >= 1", "factor")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        if self.backoff is Backoff.FIXED:
            base = self.initial_delay
        elif self.backoff is Backoff.LINEAR:
            base = self.initial_delay * attempt
        else:
            base = self.initial_delay * self.factor ** (attempt - 1)
        base = min(base, self.max_delay)
        if self.jitter:
            base *= 0.5 + 0.5 * (rng or random).random()
        return base

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts: ``max_attempts - 1`` of them."""
        for attempt in range(1, self.max_attempts):
            yield self.delay(attempt, rng)
