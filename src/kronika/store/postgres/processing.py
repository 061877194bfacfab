"""The processing runtime's state in PostgreSQL (a ``ProcessingStore``).

Semantics follow the memory backend (the reference). Processing transactions
(:meth:`PostgresProcessing.transaction`, see :mod:`.processing_tx`) carry a projection's
read-model writes, its checkpoint and its failure records, fenced by the partition's
lease. Everything else here is one statement on a pooled autocommit connection.

Leases
------
A partition's checkpoint and lease live in one row of ``partitions``. Workers claim leases
with one upsert (``acquire_leases``) that takes a partition only if its lease is free,
lapsed or already the claimant's; every time is the database's clock, so clients' clocks
may disagree freely. A processing transaction ends with ``save_fenced_checkpoint``, an
UPDATE of that row that matches only while the worker still holds an unexpired lease.
The row lock serialises the two: a claim either comes first (the fence then matches no
row: ``LeaseLost``, roll back) or waits until the fenced transaction commits, and the new
owner reads the checkpoint after its claim. So two workers never both commit work for one
partition, and no event's effects are committed twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from kronika.errors import ConfigurationError, KronikaError, NotFound
from kronika.store.postgres.database import Database
from kronika.store.postgres.processing_rows import failure_from, lease_from, record_from
from kronika.store.postgres.processing_tx import PostgresDocuments, PostgresTransaction, Rows
from kronika.store.postgres.queries import Queries
from kronika.store.processing import (
    FailedKey,
    FailureAction,
    Job,
    JobState,
    Lease,
    ProcessorRecord,
    job_from_row,
)

__all__ = ["PostgresProcessing"]


class PostgresProcessing:
    """Runtime state of one namespace, in the store's PostgreSQL schema."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace

    async def _run(self, query: bytes, params: dict[str, Any]) -> Rows:
        """One statement on a pooled connection: its rows (none for a write)."""
        async with self._db.connection() as conn:
            cur = await conn.execute(query, params, prepare=True)
            return await cur.fetchall() if cur.description else []

    async def _count(self, query: bytes, params: dict[str, Any]) -> int:
        """One write on a pooled connection: the number of rows it changed."""
        async with self._db.connection() as conn:
            cur = await conn.execute(query, params, prepare=True)
            return cur.rowcount

    def _params(self, **values: Any) -> dict[str, Any]:
        return {"namespace": self._namespace, **values}

    # -- transactions -----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A transaction for read-model writes and checkpoints: commits unless it raises."""
        tx = PostgresTransaction(self._db, self._queries, self._namespace)
        try:
            yield tx
        except BaseException:
            # The caller's error matters more than a failed ROLLBACK: the connection is
            # let go either way, and the pool discards it if it is broken.
            with contextlib.suppress(KronikaError):
                await tx.end(commit=False)
            raise
        await tx.end(commit=True)

    @asynccontextmanager
    async def documents_reader(self) -> AsyncIterator[PostgresDocuments]:
        """Read documents outside any processing transaction."""
        yield PostgresDocuments(self._run, self._queries, self._namespace, writable=False)

    # -- processors -------------------------------------------------------------------------

    async def register_processor(self, name: str, partitions: int) -> ProcessorRecord:
        """Create the processor's record if new; refuse a different partition count."""
        await self._run(
            self._queries.insert_processor, self._params(name=name, partitions=partitions)
        )
        record = await self.processor(name)
        assert record is not None  # processors are never deleted
        if record.partitions != partitions:
            raise ConfigurationError(
                f"processor {name!r} runs with {record.partitions} partitions, not {partitions}; "
                "the count is fixed once a processor has run (replay under a new name to change it)"
            )
        return record

    async def processor(self, name: str) -> ProcessorRecord | None:
        """The stored record of one processor."""
        rows = await self._run(self._queries.processors, self._params(name=name))
        return record_from(rows[0]) if rows else None

    async def processors(self) -> list[ProcessorRecord]:
        """Every processor's record, by name."""
        rows = await self._run(self._queries.processors, self._params(name=None))
        return [record_from(row) for row in rows]

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a processor (``NotFound`` if it never ran)."""
        if not await self._count(self._queries.set_paused, self._params(name=name, paused=paused)):
            raise NotFound(f"processor {name!r} has never run")

    # -- failed keys ------------------------------------------------------------------------

    async def failures(self, processor: str | None = None) -> list[FailedKey]:
        """Parked and quarantined keys, oldest first."""
        rows = await self._run(self._queries.failures, self._params(processor=processor))
        return [failure_from(row) for row in rows]

    async def request(self, processor: str, key: str, action: FailureAction) -> bool:
        """Ask for ``action`` on a failed key; False if the key is not failed."""
        params = self._params(processor=processor, key=key, action=action.value)
        return bool(await self._count(self._queries.request, params))

    # -- workers and leases -----------------------------------------------------------------

    async def worker_heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Record that ``owner`` lives for ``ttl`` seconds; every live worker, sorted."""
        rows = await self._run(self._queries.heartbeat, self._params(owner=owner, ttl=ttl))
        return [row[0] for row in rows]

    async def acquire_leases(
        self, processor: str, partitions: Sequence[int], owner: str, ttl: float
    ) -> list[int]:
        """Claim or renew leases in one statement; the partitions ``owner`` now holds."""
        if not partitions:
            return []
        params = self._params(
            processor=processor, partitions=sorted(set(partitions)), owner=owner, ttl=ttl
        )
        rows = await self._run(self._queries.acquire_leases, params)
        return sorted(row[0] for row in rows)

    async def release_leases(self, processor: str, owner: str) -> None:
        """Give up every lease ``owner`` holds on ``processor``."""
        await self.release_leases_except(processor, owner, ())

    async def release_leases_except(self, processor: str, owner: str, keep: Sequence[int]) -> None:
        """Give up ``owner``'s leases on ``processor`` other than the ``keep`` partitions."""
        params = self._params(processor=processor, owner=owner, keep=list(keep))
        await self._run(self._queries.release_leases, params)

    async def leases(self, processor: str) -> list[Lease]:
        """Current leases on a processor (lapsed ones too, until claimed or released)."""
        rows = await self._run(self._queries.leases, self._params(processor=processor))
        return [lease_from(processor, row) for row in rows]

    # -- pruning and jobs -------------------------------------------------------------------

    async def clear_documents(self, collection: str) -> None:
        """Delete every document of a collection."""
        await self._run(self._queries.clear_documents, self._params(collection=collection))

    async def drop_processor(self, name: str, *, keep_record: bool = False) -> None:
        """Forget a processor's checkpoints, leases and failures (and record, unless kept)."""
        params = self._params(name=name, keep_record=keep_record)
        await self._run(self._queries.drop_processor, params)

    async def create_job(self, job: Job) -> bool:
        """Store a new job; False if the processor already has one under way."""
        params = self._params(
            id=job.id,
            kind=job.kind,
            processor=job.processor,
            generation=job.generation,
            state=job.state.value,
            step=job.step,
            target=job.target,
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )
        return bool(await self._count(self._queries.insert_job, params))

    async def jobs(self, processor: str | None = None) -> list[Job]:
        """Jobs (of one processor, or all), oldest first."""
        rows = await self._run(self._queries.jobs, self._params(processor=processor))
        return [job_from_row(row) for row in rows]

    async def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        expected: Sequence[JobState],
        error: str | None = None,
    ) -> bool:
        """Move a job to ``state`` if it is in one of the ``expected`` states."""
        params = self._params(
            id=job_id, state=state.value, expected=[s.value for s in expected], error=error
        )
        return bool(await self._count(self._queries.update_job, params))

    async def delete_job(self, job_id: str) -> bool:
        """Remove a job's record; False if there is none."""
        return bool(await self._count(self._queries.delete_job, self._params(id=job_id)))

    async def activate_generation(
        self, name: str, generation: int, *, completing: str | None = None
    ) -> bool:
        """Make ``generation`` live; with ``completing``, only while that job runs."""
        if await self.processor(name) is None:
            raise NotFound(f"processor {name!r} has never run")
        params = self._params(name=name, generation=generation, completing=completing)
        return bool(await self._run(self._queries.activate_generation, params))
