"""Row mapping of the processing tables: records from rows, parameters from records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kronika.store.processing import (
    FailedKey,
    FailureAction,
    FailureState,
    Lease,
    ProcessorRecord,
)

__all__ = ["failure_from", "failure_params", "lease_from", "record_from"]


def record_from(values: Sequence[Any]) -> ProcessorRecord:
    """A processor's record from ``name, partitions, paused, generation, checkpoint
    partitions, checkpoint positions`` (the arrays are NULL when there is no checkpoint)."""
    name, partitions, paused, generation, numbers, positions = values
    return ProcessorRecord(
        name=name,
        partitions=partitions,
        checkpoints=dict(zip(numbers or (), positions or (), strict=True)),
        paused=paused,
        generation=generation,
    )


_FAILURE_COLUMNS = (
    "processor",
    "partition",
    "key",
    "position",
    "event_id",
    "event_type",
    "attempts",
    "error",
    "stack",
    "first_failed_at",
    "last_failed_at",
    "next_retry_at",
    "state",
    "requested",
)
"""The columns of the ``failures`` query, in order: the fields of :class:`FailedKey`."""


def failure_from(values: Sequence[Any]) -> FailedKey:
    """A failed key from a row of the ``failures`` query."""
    fields = dict(zip(_FAILURE_COLUMNS, values, strict=True))
    requested = fields.pop("requested")
    fields["state"] = FailureState(fields["state"])
    action = None if requested is None else FailureAction(requested)
    return FailedKey(**fields, requested=action)


def failure_params(namespace: str, failure: FailedKey) -> dict[str, Any]:
    """Parameters of ``save_failure`` (every column but ``requested``)."""
    return {
        "namespace": namespace,
        "processor": failure.processor,
        "key": failure.key,
        "partition": failure.partition,
        "position": failure.position,
        "event_id": failure.event_id,
        "event_type": failure.event_type,
        "attempts": failure.attempts,
        "error": failure.error,
        "stack": failure.stack,
        "first_failed_at": failure.first_failed_at,
        "last_failed_at": failure.last_failed_at,
        "next_retry_at": failure.next_retry_at,
        "state": failure.state.value,
    }


def lease_from(processor: str, values: Sequence[Any]) -> Lease:
    """A lease from ``partition, owner, lease_expires_at``."""
    partition, owner, expires_at = values
    return Lease(processor=processor, partition=partition, owner=owner, expires_at=expires_at)
