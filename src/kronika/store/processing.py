"""What the processing runtime keeps in the store's database, and the protocol to reach it.

A processor's work is split into a fixed number of *partitions* (a stable hash of each
event's key, the stream by default). Each partition is handled in order, has its own
checkpoint and its own lease, so partitions run in parallel within a worker and across
workers. A key whose handler keeps failing is *parked* inside its partition (a
:class:`FailedKey`) while the partition goes on with other keys.

Projections write their read model in a :class:`ProcessingTransaction` together with the
partition's checkpoint, so an event's effects and the record that it was handled commit
or roll back together: exactly once.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kronika.errors import ValidationError

__all__ = [
    "ACTIVE_JOB_STATES",
    "Documents",
    "FailedKey",
    "FailureAction",
    "FailureState",
    "Job",
    "JobState",
    "Lease",
    "LeaseLost",
    "ProcessingStore",
    "ProcessingTransaction",
    "ProcessorRecord",
    "job_from_row",
    "unencodable_parameter",
]


class LeaseLost(Exception):
    """The partition's lease belongs to another worker now: stop at once."""


def unencodable_parameter(exc: UnicodeEncodeError) -> ValidationError:
    """The error for a handler's SQL parameter that is not valid text (a lone surrogate,
    say), which the database driver would otherwise raise as Python's own error."""
    bad = exc.object[exc.start : exc.end]
    return ValidationError(
        f"not valid text ({exc.reason}): {bad!r} at index {exc.start}", "SQL parameter"
    )


class FailureState(enum.Enum):
    """Where a failing key stands."""

    RETRYING = "retrying"
    """Parked; retried automatically at ``next_retry_at``."""
    QUARANTINED = "quarantined"
    """Out of attempts; its events are dead letters until an operator retries or skips."""


class FailureAction(enum.Enum):
    """What an operator asked for a failed key; the worker owning its partition carries it out."""

    RETRY = "retry"
    """Try the failing event again now, with a fresh set of attempts."""
    SKIP = "skip"
    """Give up on the failing event and go on with the key's next event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedKey:
    """A key whose handler failed, parked inside its partition."""

    processor: str
    """The processor's name."""
    partition: int
    """The partition the key belongs to."""
    key: str
    """The partition key (the stream name unless the processor keys otherwise)."""
    position: int
    """Global position of the failing event: the key resumes here."""
    event_id: uuid.UUID
    """Id of the failing event."""
    event_type: str
    """Type of the failing event."""
    attempts: int
    """Failed attempts so far."""
    error: str
    """The last error, as ``ExceptionType: message``."""
    stack: str
    """The last error's traceback."""
    first_failed_at: datetime
    """When the key first failed."""
    last_failed_at: datetime
    """When it last failed."""
    next_retry_at: datetime | None
    """When it is retried next (``None`` once quarantined)."""
    state: FailureState
    """Retrying or quarantined."""
    requested: FailureAction | None = None
    """An operator's pending request, if any."""


class JobState(enum.Enum):
    """Where a job (a replay) stands."""

    RUNNING = "running"
    """Workers are doing its work."""
    STOPPED = "stopped"
    """An operator stopped it; resuming goes on from where it stood."""
    COMPLETED = "completed"
    """Its work is done (a replay: its generation took over)."""


ACTIVE_JOB_STATES = (JobState.RUNNING, JobState.STOPPED)
"""States in which a processor's job is still under way: at most one per processor."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A persisted long-running operation on a processor, such as a replay."""

    id: str
    """Unique id (a UUID, as text)."""
    kind: str
    """What the job does: ``replay``."""
    processor: str
    """The processor's (logical) name."""
    generation: int
    """The read-model generation the job builds."""
    state: JobState
    """Running, stopped or completed."""
    step: str
    """Its current step: ``building``, then ``done``."""
    target: int
    """The head position when the job started (what "caught up" is first measured against)."""
    created_at: datetime
    """When it was started."""
    updated_at: datetime
    """When its state last changed."""
    error: str | None = None
    """Why it is stuck, if it is (e.g. keys of the new generation are failing)."""


def job_from_row(values: Sequence[Any], time: Callable[[Any], datetime] = lambda v: v) -> Job:
    """A job from a row of ``id, kind, processor, generation, state, step, target, error,
    created_at, updated_at``; ``time`` turns the backend's stored times into datetimes."""
    id_, kind, processor, generation, state, step, target, error, created, updated = values
    return Job(
        id=id_,
        kind=kind,
        processor=processor,
        generation=generation,
        state=JobState(state),
        step=step,
        target=target,
        error=error,
        created_at=time(created),
        updated_at=time(updated),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A worker's claim on one partition of a processor."""

    processor: str
    """The processor's name."""
    partition: int
    """The partition."""
    owner: str
    """The worker holding it."""
    expires_at: datetime
    """When it lapses unless renewed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorRecord:
    """What is stored about one processor."""

    name: str
    """The processor's name."""
    partitions: int
    """How many partitions its work is split into (fixed once it has run)."""
    checkpoints: dict[int, int]
    """Per partition: the global position of the last event handled (absent: none yet)."""
    paused: bool
    """An operator paused it."""
    generation: int = 1
    """The read-model generation that is live (replays build the next one). Meaningful on
    a processor's own record; the records of its other generations keep the default."""


class Documents(Protocol):
    """A JSON document store for read models, inside a processing transaction."""

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The document stored under ``key``, or ``None``."""
        ...

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        """Store (insert or replace) a document."""
        ...

    async def delete(self, collection: str, key: str) -> None:
        """Remove a document if it exists."""
        ...


class ProcessingTransaction(Protocol):
    """One database transaction of the runtime: read-model writes plus bookkeeping."""

    documents: Documents
    """Documents written here commit with the checkpoint."""

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run SQL in the same database and transaction (SQL backends); rows affected."""
        ...

    async def fetch(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run a query in the same transaction and return its rows."""
        ...

    async def write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
        """Run a write whose result is not needed, in the same transaction. A backend may
        send it later (PostgreSQL batches them), but always before the transaction's next
        statement, checkpoint or commit; its errors still roll the transaction back."""
        ...

    async def set_checkpoint(
        self, processor: str, partition: int, position: int, *, owner: str | None = None
    ) -> None:
        """Record that the partition handled everything up to ``position``.

        With ``owner``, first check that ``owner`` still holds the partition's lease, and
        raise :class:`LeaseLost` otherwise (the transaction then rolls back).
        """
        ...

    async def save_failure(self, failure: FailedKey) -> None:
        """Park a key, or update its failure record (``requested`` is left as stored)."""
        ...

    async def clear_request(self, processor: str, key: str) -> None:
        """Mark an operator's request on a failed key as carried out."""
        ...

    async def clear_failure(self, processor: str, key: str) -> None:
        """Un-park a key."""
        ...


class ProcessingStore(Protocol):
    """The runtime's state in the store's database (one namespace)."""

    async def register_processor(self, name: str, partitions: int) -> ProcessorRecord:
        """Create the processor's record if new; refuse a different partition count."""
        ...

    async def processor(self, name: str) -> ProcessorRecord | None:
        """The stored record of one processor."""
        ...

    async def processors(self) -> list[ProcessorRecord]:
        """Every processor's record."""
        ...

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a processor."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[ProcessingTransaction]:
        """A transaction for read-model writes and checkpoints (commits on success)."""
        ...

    async def failures(self, processor: str | None = None) -> list[FailedKey]:
        """Parked and quarantined keys, oldest first."""
        ...

    async def request(self, processor: str, key: str, action: FailureAction) -> bool:
        """Ask for ``action`` on a failed key; False if the key is not failed."""
        ...

    async def worker_heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Record that ``owner`` is alive for ``ttl`` seconds; return every live worker, sorted."""
        ...

    async def acquire_leases(
        self, processor: str, partitions: Sequence[int], owner: str, ttl: float
    ) -> list[int]:
        """Claim or renew leases; returns the partitions ``owner`` now holds."""
        ...

    async def release_leases(self, processor: str, owner: str) -> None:
        """Give up every lease ``owner`` holds on ``processor``."""
        ...

    async def release_leases_except(self, processor: str, owner: str, keep: Sequence[int]) -> None:
        """Give up ``owner``'s leases on ``processor`` other than the ``keep`` partitions."""
        ...

    async def leases(self, processor: str) -> list[Lease]:
        """Current leases on a processor."""
        ...

    def documents_reader(self) -> AbstractAsyncContextManager[Documents]:
        """Read read-model documents outside any processing transaction."""
        ...

    async def clear_documents(self, collection: str) -> None:
        """Delete every document of a collection (pruning a replaced read model)."""
        ...

    async def drop_processor(self, name: str, *, keep_record: bool = False) -> None:
        """Forget a processor's checkpoints, leases and failed keys, and its record too
        unless ``keep_record``."""
        ...

    async def create_job(self, job: Job) -> bool:
        """Store a new job; False if the processor already has an active one."""
        ...

    async def jobs(self, processor: str | None = None) -> list[Job]:
        """Jobs (of one processor, or all), oldest first."""
        ...

    async def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        expected: Sequence[JobState],
        error: str | None = None,
    ) -> bool:
        """Move a job to ``state`` if it is in one of the ``expected`` states."""
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Remove a job's record; False if there is none."""
        ...

    async def activate_generation(
        self, name: str, generation: int, *, completing: str | None = None
    ) -> bool:
        """Make ``generation`` the processor's live one, in one transaction that also marks
        the job ``completing`` completed. False (and nothing changed) when that job is no
        longer running."""
        ...
