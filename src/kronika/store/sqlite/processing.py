"""The processing runtime's state in the SQLite database (a ``ProcessingStore``).

Semantics follow the memory backend (the reference). Three paths into the database:

- Processing transactions (:meth:`SQLiteProcessing.transaction`) run on a connection and
  thread of their own (see :mod:`.processing_connection`), because they stay open while
  handlers run. Read-model writes (documents, a handler's own SQL) commit with the
  partition's checkpoint, which is fenced by its lease: exactly once.
- Bookkeeping writes (registering, pausing, requests, heartbeats, leases) are short and go
  through the store's writer thread like every other write.
- Reads (records, failures, leases, documents outside a transaction) use the reader pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from kronika.errors import KronikaError
from kronika.store.processing import (
    FailedKey,
    FailureAction,
    Job,
    JobState,
    Lease,
    ProcessorRecord,
)
from kronika.store.sqlite import processing_jobs as jobs
from kronika.store.sqlite import processing_state as state
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.processing_connection import ProcessingConnection
from kronika.store.sqlite.processing_tx import SQLiteDocuments, SQLiteTransaction
from kronika.store.sqlite.readers import ReaderPool
from kronika.store.sqlite.writer import Writer

__all__ = ["SQLiteProcessing"]

T = TypeVar("T")


class SQLiteProcessing:
    """Runtime state of one namespace, in the store's SQLite file.

    ``writer`` and ``readers`` return the open store's writer and reader pool (raising
    ``StoreClosed`` when it is closed). The store calls :meth:`close` when it closes.
    """

    def __init__(
        self,
        config: SQLiteConfig,
        writer: Callable[[], Writer],
        readers: Callable[[], ReaderPool],
    ) -> None:
        self._config = config
        self._namespace = config.namespace
        self._writer = writer
        self._readers = readers
        self._connection: ProcessingConnection | None = None

    # -- transactions -------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        """A transaction for read-model writes and checkpoints: commits unless it raises."""
        tx = SQLiteTransaction(self._active_connection(), self._namespace, self._config.path)
        try:
            yield tx
        except BaseException:
            # The caller's error matters more than a failed ROLLBACK, which leaves nothing
            # behind: the connection is let go either way, and its next BEGIN rolls back.
            with contextlib.suppress(KronikaError):
                await tx.end(commit=False)
            raise
        await tx.end(commit=True)

    @property
    def commits(self) -> int:
        """SQLite transactions processing transactions have committed in so far (fewer
        than the processing transactions when they queue up and share one, see
        :mod:`.processing_connection`)."""
        return 0 if self._connection is None else self._connection.commits

    def _active_connection(self) -> ProcessingConnection:
        self._writer()  # raises StoreClosed unless the store is open
        if self._connection is None:
            self._connection = ProcessingConnection(self._config)
        return self._connection

    async def close(self) -> None:
        """Close the processing connection (when the store closes)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    @asynccontextmanager
    async def documents_reader(self) -> AsyncIterator[SQLiteDocuments]:
        """Read documents outside any processing transaction."""
        yield SQLiteDocuments(self._readers().run, self._namespace, writable=False)

    # -- processors ------------------------------------------------------------------------------

    async def register_processor(self, name: str, partitions: int) -> ProcessorRecord:
        """Create the processor's record if new; refuse a different partition count."""
        ns = self._namespace
        return await self._writer().call(
            lambda conn: state.register_processor(conn, ns, name, partitions)
        )

    async def processor(self, name: str) -> ProcessorRecord | None:
        """The stored record of one processor."""
        found = await self._readers().run(state.processors, self._namespace, name)
        return found[0] if found else None

    async def processors(self) -> list[ProcessorRecord]:
        """Every processor's record, by name."""
        return await self._readers().run(state.processors, self._namespace, None)

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a processor (``NotFound`` if it never ran)."""
        ns = self._namespace
        await self._writer().call(lambda conn: state.set_paused(conn, ns, name, paused))

    # -- failed keys -----------------------------------------------------------------------------

    async def failures(self, processor: str | None = None) -> list[FailedKey]:
        """Parked and quarantined keys, oldest first."""
        return await self._readers().run(state.failures, self._namespace, processor)

    async def request(self, processor: str, key: str, action: FailureAction) -> bool:
        """Ask for ``action`` on a failed key; False if the key is not failed."""
        ns = self._namespace
        return await self._writer().call(
            lambda conn: state.request(conn, ns, processor, key, action)
        )

    # -- workers and leases ----------------------------------------------------------------------

    async def worker_heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Record that ``owner`` lives for ``ttl`` seconds; every live worker, sorted."""
        ns = self._namespace
        return await self._writer().call(lambda conn: state.heartbeat(conn, ns, owner, ttl))

    async def acquire_leases(
        self, processor: str, partitions: Sequence[int], owner: str, ttl: float
    ) -> list[int]:
        """Claim or renew leases in one transaction; the partitions ``owner`` now holds."""
        ns, wanted = self._namespace, list(partitions)
        return await self._writer().call(
            lambda conn: state.acquire_leases(conn, ns, processor, wanted, owner=owner, ttl=ttl)
        )

    async def release_leases(self, processor: str, owner: str) -> None:
        """Give up every lease ``owner`` holds on ``processor``."""
        await self.release_leases_except(processor, owner, ())

    async def release_leases_except(self, processor: str, owner: str, keep: Sequence[int]) -> None:
        """Give up ``owner``'s leases on ``processor`` other than the ``keep`` partitions."""
        ns, kept = self._namespace, list(keep)
        await self._writer().call(
            lambda conn: state.release_leases_except(conn, ns, processor, owner, kept)
        )

    async def leases(self, processor: str) -> list[Lease]:
        """Current leases on a processor (lapsed ones too, until taken or released)."""
        return await self._readers().run(state.leases, self._namespace, processor)

    # -- pruning and jobs ------------------------------------------------------------------------

    async def clear_documents(self, collection: str) -> None:
        """Delete every document of a collection."""
        ns = self._namespace
        await self._writer().call(lambda conn: jobs.clear_documents(conn, ns, collection))

    async def drop_processor(self, name: str, *, keep_record: bool = False) -> None:
        """Forget a processor's checkpoints, leases and failures (and record, unless kept)."""
        ns = self._namespace
        await self._writer().call(lambda conn: jobs.drop_processor(conn, ns, name, keep_record))

    async def create_job(self, job: Job) -> bool:
        """Store a new job; False if the processor already has one under way."""
        ns = self._namespace
        return await self._writer().call(lambda conn: jobs.create_job(conn, ns, job))

    async def jobs(self, processor: str | None = None) -> list[Job]:
        """Jobs (of one processor, or all), oldest first."""
        return await self._readers().run(jobs.jobs, self._namespace, processor)

    async def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        expected: Sequence[JobState],
        error: str | None = None,
    ) -> bool:
        """Move a job to ``state`` if it is in one of the ``expected`` states."""
        ns, wanted = self._namespace, list(expected)
        return await self._writer().call(
            lambda conn: jobs.update_job(
                conn, ns, job_id, state=state, expected=wanted, error=error
            )
        )

    async def delete_job(self, job_id: str) -> bool:
        """Remove a job's record; False if there is none."""
        ns = self._namespace
        return await self._writer().call(lambda conn: jobs.delete_job(conn, ns, job_id))

    async def activate_generation(
        self, name: str, generation: int, *, completing: str | None = None
    ) -> bool:
        """Make ``generation`` live; with ``completing``, only while that job runs."""
        ns = self._namespace
        return await self._writer().call(
            lambda conn: jobs.activate_generation(conn, ns, name, generation, completing)
        )
