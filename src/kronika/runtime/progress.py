"""How far a processor (or one generation of it) has come: shared by status and replays."""

from __future__ import annotations

from datetime import datetime

from kronika.runtime.processor import Processor
from kronika.store.processing import ProcessingStore
from kronika.store.protocol import EventStore

__all__ = ["LAG_SCAN_LIMIT", "processing_of", "unhandled"]

LAG_SCAN_LIMIT = 10_000
"""Lag in events is counted exactly up to this many; beyond it ``lag_capped`` is set."""


def processing_of(store: EventStore) -> ProcessingStore:
    """The runtime state store of an event store (SQL and memory backends have one)."""
    processing = getattr(store, "processing", None)
    if processing is None:
        raise TypeError(f"the {store.engine} store cannot run processors")
    return processing  # type: ignore[no-any-return]


async def unhandled(
    store: EventStore, processor: Processor, checkpoints: dict[int, int]
) -> tuple[int, bool, datetime | None]:
    """Count unhandled events of the processor, from the lowest checkpoint on."""
    position, count, oldest = min(checkpoints.values()) + 1, 0, None
    while count < LAG_SCAN_LIMIT:
        page = await store.read_all(
            from_position=position,
            limit=1_000,
            types=processor.types,
            categories=processor.categories,
        )
        if not page:
            return count, False, oldest
        for event in page:
            if event.position > checkpoints[processor.partition(event)]:
                count += 1
                oldest = oldest or event.recorded_at
        position = page[-1].position + 1
    return count, True, oldest
