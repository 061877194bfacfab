"""Operating processors: state and lag, failed keys, dead letters, retry, skip, pause.

The HTTP API, the CLI and the console call these functions; they work on any store with a
processing state (memory, SQLite, PostgreSQL) while workers run elsewhere.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kronika.domain.events import RecordedEvent
from kronika.errors import NotFound
from kronika.runtime.generations import generation_of, physical_name
from kronika.runtime.partition import events_of_key
from kronika.runtime.processor import Processor, ProcessorKind
from kronika.runtime.progress import LAG_SCAN_LIMIT, processing_of, unhandled
from kronika.store.processing import FailedKey, FailureAction, FailureState, ProcessorRecord
from kronika.store.protocol import EventStore

__all__ = [
    "LAG_SCAN_LIMIT",
    "Operation",
    "ProcessorState",
    "ProcessorStatus",
    "dead_letters",
    "described",
    "failed_keys",
    "failure_dict",
    "live_name",
    "pause",
    "recorded",
    "request_retry",
    "request_skip",
    "resume",
    "status",
    "status_dict",
    "statuses",
]

Operation = Callable[..., Awaitable[None]]
"""An operator action taking the store and names: request_retry, request_skip, pause, resume."""


class ProcessorState(enum.Enum):
    """What a processor is doing, as an operator sees it."""

    RUNNING = "running"
    """Workers hold its partitions and nothing is failing."""
    DEGRADED = "degraded"
    """Running, but some keys are parked or quarantined."""
    PAUSED = "paused"
    """An operator paused it."""
    STOPPED = "stopped"
    """No worker holds any of its partitions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorStatus:
    """A processor's state, position and lag."""

    name: str
    """The processor's name."""
    generation: int
    """Its live read-model generation (replays build the next one)."""
    state: ProcessorState
    """Running, degraded, paused or stopped."""
    partitions: int
    """Its partition count."""
    position: int
    """The lowest partition checkpoint: every event up to here is handled."""
    head: int
    """The newest position in the store."""
    lag_events: int
    """Events of its types and categories not handled yet (counted up to LAG_SCAN_LIMIT)."""
    lag_capped: bool
    """True when there are more than ``lag_events`` unhandled events."""
    lag_seconds: float
    """Age of the oldest unhandled event (0 when caught up)."""
    parked: int
    """Keys being retried."""
    quarantined: int
    """Keys out of attempts, waiting for an operator."""
    owners: tuple[str, ...]
    """Workers holding its partitions now."""


class _Recorded(Processor):
    """A processor known only from its stored record (the application is not loaded)."""

    kind = ProcessorKind.PROJECTION

    @property
    def types(self) -> tuple[str, ...]:
        # None reads every type: the handlers, and so the types, are unknown here.
        return None  # type: ignore[return-value]


def recorded(record: ProcessorRecord) -> Processor:
    """A stand-in for a processor known only from its stored record, for :func:`status`
    when the application is not loaded: its lag counts events of every type, keyed by
    stream."""
    attributes = {"name": record.name, "partitions": record.partitions, "kind": _Recorded.kind}
    made: Processor = type(f"Recorded[{record.name}]", (_Recorded,), attributes)()
    return made


def described(record: ProcessorRecord, known: Sequence[Processor]) -> Processor:
    """The processor of ``record``: the application's, if it is among ``known``, else a
    stand-in made from the record (:func:`recorded`)."""
    return next((p for p in known if p.name == record.name), None) or recorded(record)


async def statuses(store: EventStore, known: Sequence[Processor]) -> list[ProcessorStatus]:
    """Every processor that has run, by name, described by ``known`` where it is there.
    A replay's generation (``name~gN``) is not listed: it shows under its replay job."""
    records = await processing_of(store).processors()
    return [
        await status(store, described(record, known))
        for record in sorted(records, key=lambda r: r.name)
        if generation_of(record.name)[1] == 1
    ]


async def status(store: EventStore, processor: Processor) -> ProcessorStatus:
    """State, position and lag of one processor."""
    processing = processing_of(store)
    own = await processing.processor(processor.name)
    if own is None:
        raise NotFound(f"processor {processor.name!r} has never run")
    name = physical_name(processor.name, own.generation)  # the live generation's state
    record = own if name == own.name else await processing.processor(name)
    if record is None:
        raise NotFound(f"generation {own.generation} of {processor.name!r} is missing")
    checkpoints = {p: record.checkpoints.get(p, 0) for p in range(record.partitions)}
    lag, capped, oldest = await unhandled(store, processor, checkpoints)
    failures = await processing.failures(name)
    now = datetime.now(UTC)
    owners = tuple(
        sorted({lease.owner for lease in await processing.leases(name) if lease.expires_at > now})
    )
    quarantined = sum(f.state is FailureState.QUARANTINED for f in failures)
    return ProcessorStatus(
        name=processor.name,
        generation=own.generation,
        state=_state(own.paused, bool(owners), bool(failures)),
        partitions=record.partitions,
        position=min(checkpoints.values()),
        head=await store.head_position(),
        lag_events=lag,
        lag_capped=capped,
        lag_seconds=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        parked=len(failures) - quarantined,
        quarantined=quarantined,
        owners=owners,
    )


def _state(paused: bool, held: bool, failing: bool) -> ProcessorState:
    if paused:
        return ProcessorState.PAUSED
    if not held:
        return ProcessorState.STOPPED
    return ProcessorState.DEGRADED if failing else ProcessorState.RUNNING


async def live_name(store: EventStore, processor: str) -> str:
    """Where the state of a processor's live generation is kept: ``processor`` itself
    until a replay switched generations, then ``processor~gN``. A name that already names
    a generation (``processor~gN``, e.g. a replay's failed keys) is returned as it is."""
    if generation_of(processor)[1] != 1:
        return processor
    record = await processing_of(store).processor(processor)
    return processor if record is None else physical_name(processor, record.generation)


async def failed_keys(store: EventStore, processor: str | None = None) -> list[FailedKey]:
    """Parked and quarantined keys (of one processor's live generation, or all), oldest
    first."""
    name = None if processor is None else await live_name(store, processor)
    return await processing_of(store).failures(name)


async def dead_letters(store: EventStore, processor: Processor, key: str) -> list[RecordedEvent]:
    """The events a failed key is holding back, from the failing one on."""
    processing = processing_of(store)
    name = await live_name(store, processor.name)
    failure = next((f for f in await processing.failures(name) if f.key == key), None)
    record = await processing.processor(name)
    if failure is None or record is None:
        raise NotFound(f"key {key!r} of processor {processor.name!r} is not failed")
    end = record.checkpoints.get(failure.partition, 0)
    return await events_of_key(store, processor, key, failure.position, end)


async def _request(store: EventStore, processor: str, key: str, action: FailureAction) -> None:
    name = await live_name(store, processor)
    if not await processing_of(store).request(name, key, action):
        raise NotFound(f"key {key!r} of processor {processor!r} is not failed")


async def request_retry(store: EventStore, processor: str, key: str) -> None:
    """Ask the worker owning the key's partition to retry it now, with fresh attempts."""
    await _request(store, processor, key, FailureAction.RETRY)


async def request_skip(store: EventStore, processor: str, key: str) -> None:
    """Ask the worker owning the key's partition to skip its failing event."""
    await _request(store, processor, key, FailureAction.SKIP)


async def pause(store: EventStore, processor: str) -> None:
    """Pause a processor: workers release its partitions until it is resumed."""
    await _require(store, processor)
    await processing_of(store).set_paused(processor, True)


async def resume(store: EventStore, processor: str) -> None:
    """Resume a paused processor."""
    await _require(store, processor)
    await processing_of(store).set_paused(processor, False)


async def _require(store: EventStore, processor: str) -> None:
    if await processing_of(store).processor(processor) is None:
        raise NotFound(f"processor {processor!r} has never run")


def status_dict(state: ProcessorStatus) -> dict[str, Any]:
    """A processor's state, position and lag as JSON-ready values (CLI ``--json``, HTTP)."""
    return {
        "name": state.name,
        "generation": state.generation,
        "state": state.state.value,
        "partitions": state.partitions,
        "position": state.position,
        "head": state.head,
        "lag_events": state.lag_events,
        "lag_capped": state.lag_capped,
        "lag_seconds": state.lag_seconds,
        "parked": state.parked,
        "quarantined": state.quarantined,
        "workers": list(state.owners),
    }


def failure_dict(failure: FailedKey) -> dict[str, Any]:
    """A parked or quarantined key as JSON-ready values (CLI ``--json``, HTTP)."""
    return {
        "processor": failure.processor,
        "partition": failure.partition,
        "key": failure.key,
        "state": failure.state.value,
        "attempts": failure.attempts,
        "position": failure.position,
        "event_id": str(failure.event_id),
        "event_type": failure.event_type,
        "error": failure.error,
        "stack": failure.stack,
        "first_failed_at": failure.first_failed_at.isoformat(),
        "last_failed_at": failure.last_failed_at.isoformat(),
        "next_retry_at": failure.next_retry_at.isoformat() if failure.next_retry_at else None,
        "requested": failure.requested.value if failure.requested else None,
    }
