"""The runtime's state for the memory backend: dicts, with copy-on-commit transactions."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kronika.errors import ConfigurationError, NotFound
from kronika.store.processing import (
    ACTIVE_JOB_STATES,
    FailedKey,
    FailureAction,
    Job,
    JobState,
    Lease,
    LeaseLost,
    ProcessorRecord,
)

__all__ = ["MemoryProcessing"]


@dataclass
class _State:
    processors: dict[str, ProcessorRecord] = field(default_factory=dict)
    failures: dict[tuple[str, str], FailedKey] = field(default_factory=dict)
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    leases: dict[tuple[str, int], Lease] = field(default_factory=dict)
    workers: dict[str, datetime] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)


_DELETED: dict[str, Any] = {}
"""Marks a document deleted in a transaction's overlay."""


class _Documents:
    """Documents read through an optional overlay of uncommitted writes."""

    def __init__(
        self, state: _State, overlay: dict[tuple[str, str], dict[str, Any]] | None = None
    ) -> None:
        self._state = state
        self._overlay = overlay

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        found = self._overlay.get((collection, key)) if self._overlay is not None else None
        if found is None:
            found = self._state.documents.get((collection, key))
        return None if found is None or found is _DELETED else copy.deepcopy(found)

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        self._writable()[(collection, key)] = copy.deepcopy(document)

    async def delete(self, collection: str, key: str) -> None:
        self._writable()[(collection, key)] = _DELETED

    def _writable(self) -> dict[tuple[str, str], dict[str, Any]]:
        if self._overlay is None:
            raise ConfigurationError("documents are written inside a processing transaction")
        return self._overlay


class _Transaction:
    """Collects writes; :meth:`apply` makes them visible when the transaction commits."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._documents: dict[tuple[str, str], dict[str, Any]] = {}
        self._checkpoints: list[tuple[str, int, int]] = []
        self._failures: dict[tuple[str, str], FailedKey | None] = {}
        self._cleared: list[tuple[str, str]] = []
        self.documents = _Documents(state, self._documents)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        raise ConfigurationError("the memory store has no SQL; use the document store")

    async def fetch(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        raise ConfigurationError("the memory store has no SQL; use the document store")

    async def write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
        raise ConfigurationError("the memory store has no SQL; use the document store")

    async def set_checkpoint(
        self, processor: str, partition: int, position: int, *, owner: str | None = None
    ) -> None:
        if owner is not None:
            lease = self._state.leases.get((processor, partition))
            if lease is None or lease.owner != owner or lease.expires_at <= datetime.now(UTC):
                raise LeaseLost(f"{processor} partition {partition} is no longer leased to {owner}")
        self._checkpoints.append((processor, partition, position))

    async def save_failure(self, failure: FailedKey) -> None:
        stored = self._state.failures.get((failure.processor, failure.key))
        requested = stored.requested if stored is not None else None
        self._failures[(failure.processor, failure.key)] = replace(failure, requested=requested)

    async def clear_request(self, processor: str, key: str) -> None:
        self._cleared.append((processor, key))

    async def clear_failure(self, processor: str, key: str) -> None:
        self._failures[(processor, key)] = None

    def apply(self) -> None:
        for key, document in self._documents.items():
            if document is _DELETED:
                self._state.documents.pop(key, None)
            else:
                self._state.documents[key] = document
        for processor, partition, position in self._checkpoints:
            self._state.processors[processor].checkpoints[partition] = position
        for key, failure in self._failures.items():
            if failure is None:
                self._state.failures.pop(key, None)
            else:
                self._state.failures[key] = failure
        for key in self._cleared:
            if key in self._state.failures:
                self._state.failures[key] = replace(self._state.failures[key], requested=None)


class MemoryProcessing:
    """Runtime state held in memory, per namespace of a memory store's log."""

    def __init__(self) -> None:
        self._state = _State()

    async def register_processor(self, name: str, partitions: int) -> ProcessorRecord:
        record = self._state.processors.get(name)
        if record is None:
            record = self._state.processors[name] = ProcessorRecord(
                name=name, partitions=partitions, checkpoints={}, paused=False
            )
        elif record.partitions != partitions:
            raise ConfigurationError(
                f"processor {name!r} runs with {record.partitions} partitions, not {partitions}; "
                "the count is fixed once a processor has run (replay under a new name to change it)"
            )
        return copy.deepcopy(record)

    async def processor(self, name: str) -> ProcessorRecord | None:
        record = self._state.processors.get(name)
        return copy.deepcopy(record) if record else None

    async def processors(self) -> list[ProcessorRecord]:
        return [copy.deepcopy(r) for r in self._state.processors.values()]

    async def set_paused(self, name: str, paused: bool) -> None:
        record = self._state.processors[name]
        self._state.processors[name] = replace(record, paused=paused)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        transaction = _Transaction(self._state)
        yield transaction
        transaction.apply()

    @asynccontextmanager
    async def documents_reader(self) -> AsyncIterator[_Documents]:
        yield _Documents(self._state)

    async def failures(self, processor: str | None = None) -> list[FailedKey]:
        found = [f for f in self._state.failures.values() if processor in (None, f.processor)]
        return sorted(found, key=lambda f: (f.first_failed_at, f.position))

    async def request(self, processor: str, key: str, action: FailureAction) -> bool:
        stored = self._state.failures.get((processor, key))
        if stored is None:
            return False
        self._state.failures[(processor, key)] = replace(stored, requested=action)
        return True

    async def worker_heartbeat(self, owner: str, ttl: float) -> list[str]:
        now = datetime.now(UTC)
        self._state.workers[owner] = now + timedelta(seconds=ttl)
        return sorted(name for name, until in self._state.workers.items() if until > now)

    async def acquire_leases(
        self, processor: str, partitions: Sequence[int], owner: str, ttl: float
    ) -> list[int]:
        now = datetime.now(UTC)
        held = []
        for partition in partitions:
            lease = self._state.leases.get((processor, partition))
            if lease is None or lease.owner == owner or lease.expires_at <= now:
                self._state.leases[(processor, partition)] = Lease(
                    processor=processor,
                    partition=partition,
                    owner=owner,
                    expires_at=now + timedelta(seconds=ttl),
                )
                held.append(partition)
        return held

    async def release_leases(self, processor: str, owner: str) -> None:
        await self.release_leases_except(processor, owner, ())

    async def release_leases_except(self, processor: str, owner: str, keep: Sequence[int]) -> None:
        for key, lease in list(self._state.leases.items()):
            if (
                lease.processor == processor
                and lease.owner == owner
                and lease.partition not in keep
            ):
                del self._state.leases[key]

    async def leases(self, processor: str) -> list[Lease]:
        return [lease for lease in self._state.leases.values() if lease.processor == processor]

    # -- pruning and jobs ---------------------------------------------------------------

    async def clear_documents(self, collection: str) -> None:
        for key in [k for k in self._state.documents if k[0] == collection]:
            del self._state.documents[key]

    def apply_documents(
        self,
        changes: Mapping[tuple[str, str], dict[str, Any] | None],
        *,
        clear: Sequence[str] = (),
    ) -> None:
        """Empty the ``clear`` collections, then store each ``(collection, key)`` document
        (``None``: delete it): what an inline projection wrote, at once (no await)."""
        emptied = set(clear)
        if emptied:
            for key in [k for k in self._state.documents if k[0] in emptied]:
                del self._state.documents[key]
        for key, document in changes.items():
            if document is None:
                self._state.documents.pop(key, None)
            else:
                self._state.documents[key] = document

    async def drop_processor(self, name: str, *, keep_record: bool = False) -> None:
        state = self._state
        state.failures = {k: f for k, f in state.failures.items() if f.processor != name}
        state.leases = {k: lease for k, lease in state.leases.items() if lease.processor != name}
        record = state.processors.get(name)
        if record is not None and keep_record:
            state.processors[name] = replace(record, checkpoints={})
        elif record is not None:
            del state.processors[name]

    async def create_job(self, job: Job) -> bool:
        if any(
            j.processor == job.processor and j.state in ACTIVE_JOB_STATES
            for j in self._state.jobs.values()
        ):
            return False
        self._state.jobs[job.id] = job
        return True

    async def jobs(self, processor: str | None = None) -> list[Job]:
        found = [j for j in self._state.jobs.values() if processor in (None, j.processor)]
        return sorted(found, key=lambda j: (j.created_at, j.id))

    async def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        expected: Sequence[JobState],
        error: str | None = None,
    ) -> bool:
        job = self._state.jobs.get(job_id)
        if job is None or job.state not in expected:
            return False
        step = "done" if state is JobState.COMPLETED else job.step
        self._state.jobs[job_id] = replace(
            job, state=state, step=step, error=error, updated_at=datetime.now(UTC)
        )
        return True

    async def delete_job(self, job_id: str) -> bool:
        return self._state.jobs.pop(job_id, None) is not None

    async def activate_generation(
        self, name: str, generation: int, *, completing: str | None = None
    ) -> bool:
        if completing is not None and not await self.update_job(
            completing, state=JobState.COMPLETED, expected=[JobState.RUNNING]
        ):
            return False
        record = self._state.processors.get(name)
        if record is None:
            raise NotFound(f"processor {name!r} has never run")
        self._state.processors[name] = replace(record, generation=generation)
        return True
