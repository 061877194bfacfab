"""Mapping between the processing tables' rows and the runtime's values.

Times are stored as integer microseconds since the Unix epoch (like ``events.recorded_at``):
exact for ``datetime``'s resolution, and compared as numbers in SQL. They come back as
timezone-aware UTC datetimes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kronika.store.processing import FailedKey, FailureAction, FailureState, Lease, ProcessorRecord

__all__ = [
    "failure_from_row",
    "failure_params",
    "lease_from_row",
    "micros",
    "moment",
    "now_micros",
    "records_from_rows",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def now_micros() -> int:
    """The current time, in microseconds since the epoch."""
    return time.time_ns() // 1000


def micros(at: datetime) -> int:
    """A datetime as microseconds since the epoch (a naive one is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // _MICROSECOND


def moment(value: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


def failure_params(namespace: str, failure: FailedKey) -> dict[str, Any]:
    """The ``save_failure`` parameters of a failed key (``requested`` is never saved)."""
    retry_at = failure.next_retry_at
    return {
        "namespace": namespace,
        "processor": failure.processor,
        "key": failure.key,
        "partition": failure.partition,
        "position": failure.position,
        "event_id": failure.event_id.bytes,
        "event_type": failure.event_type,
        "attempts": failure.attempts,
        "error": failure.error,
        "stack": failure.stack,
        "first_failed_at": micros(failure.first_failed_at),
        "last_failed_at": micros(failure.last_failed_at),
        "next_retry_at": None if retry_at is None else micros(retry_at),
        "state": failure.state.value,
    }


def failure_from_row(row: tuple[Any, ...]) -> FailedKey:
    """Map a ``select_failures`` row."""
    (processor, partition, key, position, event_id, event_type, attempts, error, stack,
     first_failed_at, last_failed_at, next_retry_at, state, requested) = row  # fmt: skip
    return FailedKey(
        processor=processor,
        partition=partition,
        key=key,
        position=position,
        event_id=uuid.UUID(bytes=event_id),
        event_type=event_type,
        attempts=attempts,
        error=error,
        stack=stack,
        first_failed_at=moment(first_failed_at),
        last_failed_at=moment(last_failed_at),
        next_retry_at=None if next_retry_at is None else moment(next_retry_at),
        state=FailureState(state),
        requested=None if requested is None else FailureAction(requested),
    )


def records_from_rows(rows: Iterable[tuple[Any, ...]]) -> list[ProcessorRecord]:
    """Map ``select_processors`` rows (one per checkpoint) to one record per processor."""
    records: dict[str, ProcessorRecord] = {}
    for name, partitions, paused, generation, partition, position in rows:
        record = records.get(name)
        if record is None:
            record = records[name] = ProcessorRecord(
                name=name,
                partitions=partitions,
                checkpoints={},
                paused=bool(paused),
                generation=generation,
            )
        if partition is not None:
            record.checkpoints[partition] = position
    return list(records.values())


def lease_from_row(processor: str, row: tuple[Any, ...]) -> Lease:
    """Map a ``select_leases`` row."""
    partition, owner, expires_at = row
    return Lease(
        processor=processor, partition=partition, owner=owner, expires_at=moment(expires_at)
    )
