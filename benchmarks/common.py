"""What the Kronika side and the raw baselines share: workloads, scales, payloads, samples."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_TYPE",
    "METADATA",
    "SCALES",
    "SEED_BATCH",
    "WORKLOADS",
    "Sample",
    "Scale",
    "best",
    "median_rate",
    "order_data",
]

WORKLOADS: dict[str, str] = {
    "W1": "1 event per append to new streams, sequential",
    "W2": "1 event per append to 100 streams round-robin, exact expected version",
    "W3": "100 events per append to new streams",
    "W4": "read one 1,000-event stream, repeatedly",
    "W5": "catch up the global log from position 0, in pages",
    "W6": "8 concurrent writers, 1 event per append, each to its own stream",
    "W6t": "W6 with a live subscriber from position 0; events it missed",
}
"""Workload name -> what it does (the order is the order of a run)."""

EVENT_TYPE = "OrderPlaced"

SEED_BATCH = 1000
"""Events per append (or per COPY / executemany) when W4 and W5 fill their database, untimed."""

METADATA: dict[str, Any] = {
    "correlation_id": "0b9f6a8e-5d2c-4f7e-9a51-3c0d2e7b6f10",
    "source": "benchmark",
}
"""The same metadata on every event (encoded per event on both sides)."""


def order_data(i: int) -> dict[str, Any]:
    """A small, realistic payload (about 170 bytes of JSON)."""
    return {
        "order_id": i,
        "customer": f"customer-{i % 100}",
        "amount": 19.99 + i % 7,
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-2", "qty": 1}],
    }


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How much work each workload does in one measurement."""

    name: str
    w1_appends: int
    """W1: appends (= events) to new streams."""
    w2_appends: int
    """W2: appends (= events) spread round-robin over ``w2_streams``."""
    w2_streams: int = 100
    w3_appends: int
    """W3: appends of ``w3_batch`` events each."""
    w3_batch: int = 100
    w4_reads: int
    """W4: full reads of a ``w4_stream_events``-event stream."""
    w4_stream_events: int = 1000
    w5_events: int
    """W5: events in the global log read from position 0, ``w5_page`` per query."""
    w5_page: int = 1000
    w6_writers: int = 8
    w6_appends_per_writer: int
    """W6/W6t: single-event appends per writer."""
    repeats: int
    """Measurements per side (raw, Kronika, raw, Kronika, ...); the best one is reported."""


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        name="tiny",
        w1_appends=50,
        w2_appends=50,
        w3_appends=5,
        w4_reads=5,
        w5_events=1_000,
        w6_appends_per_writer=20,
        repeats=1,
    ),
    "small": Scale(
        name="small",
        w1_appends=300,
        w2_appends=300,
        w3_appends=30,
        w4_reads=20,
        w5_events=10_000,
        w6_appends_per_writer=100,
        repeats=2,
    ),
    "full": Scale(
        name="full",
        w1_appends=3_000,
        w2_appends=3_000,
        w3_appends=300,
        w4_reads=200,
        w5_events=100_000,
        w6_appends_per_writer=1_000,
        repeats=3,
    ),
}


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One timed measurement."""

    events: int
    """Events written or read in the timed part."""
    seconds: float
    """Wall-clock time of the timed part (set-up excluded)."""
    missed: int | None = None
    """W6t: acknowledged events the live reader never delivered."""
    duplicates: int | None = None
    """W6t: events the live reader delivered more than once."""
    lag: float | None = None
    """W6t: seconds the reader needed after the writers finished to catch up."""

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def best(samples: list[Sample]) -> Sample | None:
    """The fastest sample (None if there is none)."""
    return max(samples, key=lambda s: s.rate, default=None)


def median_rate(samples: list[Sample]) -> float | None:
    """The median events/s of the samples (None if there is none)."""
    return statistics.median(s.rate for s in samples) if samples else None
