"""Processing transactions on PostgreSQL: read-model writes, checkpoints and failures together.

A transaction borrows a pooled connection and sends ``BEGIN`` at its first statement, not
when it is created: a handler that does slow work or appends events before touching the
database holds no connection meanwhile (and cannot starve the pool its own append needs).
The checkpoint comes last, fenced by the partition's lease (``save_fenced_checkpoint``), so
a worker that lost its lease rolls back everything the transaction wrote.

While a transaction that wrote is open, it holds back the visibility horizon of global
readers (see :mod:`.store`): keep handlers short.

Speed: every statement a handler awaits is a round trip, and in asyncio psycopg's client
side of one costs about 100 µs of CPU. Two things keep that down:

- Documents are written behind (:class:`BufferedDocuments`): ``put`` and ``delete`` wait in
  the transaction and go to the server together, one ``executemany`` per kind, before
  anything that could see them runs (a handler's own SQL, the checkpoint, failure records,
  ``COMMIT``). A ``get`` of a key written in the transaction is answered from the buffer,
  so handlers still read their own writes. A server-side error of a buffered write (rare:
  documents are encoded and checked when put) surfaces at that flush, inside the same
  transaction, so it still rolls back; the runtime then handles the batch one event per
  transaction and parks the right key.
- The transaction runs its statements through one cursor, instead of a new one per
  statement (about a fifth of the client's CPU per statement).
- ``BEGIN`` waits for the transaction's first statement, and buffered writes go out in one
  pipeline with the statement that flushes them: a batch whose handlers only write costs
  two round trips (``BEGIN``, the writes and the fenced checkpoint; then ``COMMIT``), not
  four.
- A run of many writes of one statement is one call of a temporary function over arrays
  of the run's parameters, not an ``executemany`` with a message and a result per row
  (see :mod:`.write_runs`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from psycopg import AsyncCursor
from psycopg.pq import TransactionStatus

from kronika.errors import ConfigurationError, KronikaError
from kronika.store.base import encode_json
from kronika.store.postgres.database import Connection, Database, RawJson
from kronika.store.postgres.errors import translated
from kronika.store.postgres.processing_rows import failure_params
from kronika.store.postgres.queries import Queries
from kronika.store.postgres.write_runs import MIN_ROWS, WriteRuns
from kronika.store.processing import FailedKey, LeaseLost

__all__ = ["BufferedDocuments", "PostgresDocuments", "PostgresTransaction"]

Params = Sequence[Any] | dict[str, Any]
Rows = list[tuple[Any, ...]]
Run = Callable[[bytes, dict[str, Any]], Awaitable[Rows]]
"""Runs one of Kronika's queries and returns its rows (none for a write)."""


class PostgresDocuments:
    """JSON documents in the ``documents`` table (``jsonb``)."""

    def __init__(self, run: Run, queries: Queries, namespace: str, *, writable: bool) -> None:
        self._run = run
        self._queries = queries
        self._namespace = namespace
        self._writable = writable

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        rows = await self._run(self._queries.get_document, self._key(collection, key))
        return rows[0][0] if rows else None

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        params = self._writable_key(collection, key)
        params["data"] = RawJson(encode_json(document, "document"))
        await self._run(self._queries.put_document, params)

    async def delete(self, collection: str, key: str) -> None:
        await self._run(self._queries.delete_document, self._writable_key(collection, key))

    def _key(self, collection: str, key: str) -> dict[str, Any]:
        return {"namespace": self._namespace, "collection": collection, "key": key}

    def _writable_key(self, collection: str, key: str) -> dict[str, Any]:
        if not self._writable:
            raise ConfigurationError("documents are written inside a processing transaction")
        return self._key(collection, key)


class BufferedDocuments(PostgresDocuments):
    """A processing transaction's documents: writes wait here until the transaction flushes
    them (see the module's docstring); reads see them."""

    def __init__(self, run: Run, queries: Queries, namespace: str) -> None:
        super().__init__(run, queries, namespace, writable=True)
        self.pending: dict[tuple[str, str], RawJson | None] = {}
        """(collection, key) -> the document's JSON, or None for a delete: the last write wins."""

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        if (collection, key) not in self.pending:
            return await super().get(collection, key)
        data = self.pending[collection, key]
        return None if data is None else orjson.loads(data.data)  # a copy, as from the server

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        self._writable_key(collection, key)
        self.pending[collection, key] = RawJson(encode_json(document, "document"))

    async def delete(self, collection: str, key: str) -> None:
        self._writable_key(collection, key)
        self.pending[collection, key] = None

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The buffered writes as parameters: (puts, deletes); the buffer is emptied."""
        puts: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for (collection, key), data in self.pending.items():
            params = self._key(collection, key)
            if data is None:
                deletes.append(params)
            else:
                params["data"] = data
                puts.append(params)
        self.pending.clear()
        return puts, deletes


class PostgresTransaction:
    """One processing transaction; :meth:`end` commits or rolls it back."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace
        self._conn: Connection | None = None
        self._cur: AsyncCursor[Any] | None = None
        self._begun = False
        """Whether ``BEGIN`` was sent on the borrowed connection."""
        self._ended = False
        self.documents = BufferedDocuments(self._rows, queries, namespace)
        self._runs: list[tuple[str, list[Params]]] = []
        """A handler's buffered writes (:meth:`write`), in order: consecutive writes of one
        statement together, as (statement, parameters of each)."""
        self._write_runs = WriteRuns()

    # -- the connection -------------------------------------------------------------------

    async def _connection(self) -> Connection:
        """The transaction's connection, borrowed at its first write or statement."""
        if self._ended:
            raise ConfigurationError("this processing transaction has ended")
        if self._conn is None:
            self._conn = await self._db.borrow()  # end() gives it back, whatever happens
            self._cur = self._conn.cursor()
        elif self._begun and self._conn.info.transaction_status == TransactionStatus.IDLE:
            raise ConfigurationError("this processing transaction is no longer open")
        return self._conn

    async def _cursor_of(self) -> AsyncCursor[Any]:
        """The transaction's cursor, on its connection, after ``BEGIN``."""
        conn = await self._connection()
        if not self._begun:
            with translated(self._db.connection_lost):
                await conn.execute(self._queries.begin, prepare=False)
            self._begun = True
        assert self._cur is not None
        return self._cur

    def _buffered(self) -> bool:
        return bool(self._runs or self.documents.pending)

    async def _prepare_runs(self) -> None:
        """Make the temporary functions that long runs of the buffered writes need, if
        not made yet (never inside a pipeline: it waits for answers). ``BEGIN`` is sent
        here only if a function is made: otherwise it goes in the flush's pipeline."""
        for sql, rows in self._runs:
            if len(rows) >= MIN_ROWS:
                conn = await self._connection()
                if not self._write_runs.decided(conn, sql):
                    cur = await self._cursor_of()
                    with translated(self._db.connection_lost):
                        await self._write_runs.prepare(cur, sql, rows)

    async def _flush(self, *, prepared: bool = False) -> None:
        """Send the buffered writes (before anything that could see them): documents, then
        the handlers' own writes in order, each run of one statement in one call (long
        runs, see :mod:`.write_runs`) or one executemany. ``prepared``: the caller ran
        :meth:`_prepare_runs` (and may have opened a pipeline since)."""
        if not prepared:
            await self._prepare_runs()
        if self.documents.pending:
            puts, deletes = self.documents.take()
            cur = await self._cursor_of()
            with translated(self._db.connection_lost):
                if puts:
                    await cur.executemany(self._queries.put_document, puts)
                if deletes:
                    await cur.executemany(self._queries.delete_document, deletes)
        if self._runs:
            runs, self._runs = self._runs, []
            cur = await self._cursor_of()
            utf8 = cur.connection.info.encoding == "utf-8"
            for sql, rows in runs:
                batched = self._write_runs.get(cur.connection, sql)
                arrays = None
                if batched is not None and len(rows) >= MIN_ROWS:
                    arrays = batched.arrays(rows, utf8=utf8)
                with translated(self._db.connection_lost, handler_sql=True):
                    if batched is not None and arrays is not None:
                        await cur.execute(batched.call, arrays)
                    else:
                        await cur.executemany(sql, rows)

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) what was written, if anything; the transaction is over.

        A transaction in which a statement failed is rolled back and reported, even if the
        handler caught the error: PostgreSQL would turn its COMMIT into a silent rollback.
        """
        if commit and not self._ended:
            try:
                await self._flush()
            except BaseException:
                await self._finish(commit=False)
                raise
        await self._finish(commit=commit)

    async def _finish(self, *, commit: bool) -> None:
        self._ended = True
        self.documents.pending.clear()
        self._runs.clear()
        conn, self._conn, self._cur = self._conn, None, None
        if conn is None:
            return
        status = conn.info.transaction_status
        failed = commit and status != TransactionStatus.INTRANS
        try:
            if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                query = self._queries.commit if commit and not failed else self._queries.rollback
                with translated(self._db.connection_lost):
                    await conn.execute(query, prepare=False)
                if commit and not failed:
                    self._write_runs.committed()
        finally:
            idle = conn.info.transaction_status == TransactionStatus.IDLE
            await self._db.give_back(conn, healthy=idle)
        if failed:
            raise KronikaError("this processing transaction failed earlier: rolled back")

    # -- Kronika's statements ---------------------------------------------------------------

    async def _cursor(self, query: bytes, params: dict[str, Any]) -> AsyncCursor[Any]:
        """Run one of Kronika's writes after the buffered writes: with them and ``BEGIN``
        (whichever are due), in one pipeline, one round trip."""
        if self._begun and not self._buffered():
            cur = await self._cursor_of()
            with translated(self._db.connection_lost):
                return await cur.execute(query, params, prepare=True)
        conn = await self._connection()
        pipelined = self._cur
        assert pipelined is not None
        await self._prepare_runs()
        with translated(self._db.connection_lost, handler_sql=True):
            async with conn.pipeline():
                if not self._begun:
                    await conn.execute(self._queries.begin, prepare=False)
                    self._begun = True
                await self._flush(prepared=True)
                await pipelined.execute(query, params, prepare=True)
        return pipelined

    async def _rows(self, query: bytes, params: dict[str, Any]) -> Rows:
        """Run one of Kronika's reads (a document's key not written here: no flush needed)."""
        cur = await self._cursor_of()
        with translated(self._db.connection_lost):
            await cur.execute(query, params, prepare=True)
            return await cur.fetchall() if cur.description else []

    async def set_checkpoint(
        self, processor: str, partition: int, position: int, *, owner: str | None = None
    ) -> None:
        params = {
            "namespace": self._namespace,
            "processor": processor,
            "partition": partition,
            "position": position,
        }
        if owner is None:
            await self._cursor(self._queries.save_checkpoint, params)
            return
        cur = await self._cursor(self._queries.save_fenced_checkpoint, {**params, "owner": owner})
        if cur.rowcount == 0:
            raise LeaseLost(f"{processor} partition {partition} is no longer leased to {owner}")

    async def save_failure(self, failure: FailedKey) -> None:
        await self._cursor(self._queries.save_failure, failure_params(self._namespace, failure))

    async def clear_request(self, processor: str, key: str) -> None:
        await self._cursor(self._queries.clear_request, self._key(processor, key))

    async def clear_failure(self, processor: str, key: str) -> None:
        await self._cursor(self._queries.delete_failure, self._key(processor, key))

    def _key(self, processor: str, key: str) -> dict[str, Any]:
        return {"namespace": self._namespace, "processor": processor, "key": key}

    # -- a handler's own SQL ----------------------------------------------------------------

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a handler's SQL (``%s`` / ``%(name)s`` placeholders); rows affected."""
        cur = await self._statement(sql, params)
        return cur.rowcount

    async def write(self, sql: str, params: Params) -> None:
        """Buffer a handler's write whose result it does not need; it is sent before the
        transaction's next statement, checkpoint or commit (consecutive writes of the same
        statement together: one call for a long run, see :mod:`.write_runs`, else one
        ``executemany``). Its errors surface there, inside this transaction, so it still
        rolls back."""
        if not params:
            raise ConfigurationError("write() takes parameters; use execute() for plain SQL")
        if self._conn is None:
            await self._connection()  # borrow now: a pool that is exhausted fails the handler
        elif self._ended:
            raise ConfigurationError("this processing transaction has ended")
        runs = self._runs
        if runs and runs[-1][0] == sql:
            runs[-1][1].append(params)
        else:
            runs.append((sql, [params]))

    async def fetch(self, sql: str, params: Params = ()) -> Rows:
        """Run a handler's query and return its rows (none for a statement without result)."""
        cur = await self._statement(sql, params)
        if cur.description is None:
            return []
        with translated(self._db.connection_lost, handler_sql=True):
            return await cur.fetchall()

    async def _statement(self, sql: str, params: Params) -> AsyncCursor[Any]:
        """Without parameters the text is sent as is (several statements may be given);
        with them it is prepared, as handlers repeat the same statements."""
        await self._flush()  # the handler's SQL may read the documents
        cur = await self._cursor_of()
        with translated(self._db.connection_lost, handler_sql=True):
            if params:
                await cur.execute(sql, params)
            else:
                await cur.execute(sql, prepare=False)
        if cur.connection.info.transaction_status == TransactionStatus.IDLE:
            raise ConfigurationError("a handler's SQL must not end the processing transaction")
        return cur
