"""Processing transactions on PostgreSQL: read-model writes, checkpoints and failures together.

A transaction borrows a pooled connection and sends ``BEGIN`` at its first statement, not
when it is created: a handler that does slow work or appends events before touching the
database holds no connection meanwhile (and cannot starve the pool its own append needs).
The checkpoint comes last, fenced by the partition's lease (``save_fenced_checkpoint``), so
a worker that lost its lease rolls back everything the transaction wrote.

While a transaction that wrote is open, it holds back the visibility horizon of global
readers (see :mod:`.store`): keep handlers short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from psycopg import AsyncCursor
from psycopg.pq import TransactionStatus

from kronika.errors import ConfigurationError, KronikaError
from kronika.store.base import encode_json
from kronika.store.postgres.database import Connection, Database, RawJson
from kronika.store.postgres.errors import translated
from kronika.store.postgres.processing_rows import failure_params
from kronika.store.postgres.queries import Queries
from kronika.store.processing import FailedKey, LeaseLost

__all__ = ["PostgresDocuments", "PostgresTransaction"]

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


class PostgresTransaction:
    """One processing transaction; :meth:`end` commits or rolls it back."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace
        self._conn: Connection | None = None
        self._ended = False
        self.documents = PostgresDocuments(self._rows, queries, namespace, writable=True)

    # -- the connection -------------------------------------------------------------------

    async def _connection(self) -> Connection:
        """The transaction's connection, borrowed and begun at the first statement."""
        if self._ended:
            raise ConfigurationError("this processing transaction has ended")
        if self._conn is None:
            self._conn = await self._db.borrow()  # end() gives it back, whatever happens
            with translated(self._db.connection_lost):
                await self._conn.execute(self._queries.begin, prepare=False)
        elif self._conn.info.transaction_status == TransactionStatus.IDLE:
            raise ConfigurationError("this processing transaction is no longer open")
        return self._conn

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) what was written, if anything; the transaction is over.

        A transaction in which a statement failed is rolled back and reported, even if the
        handler caught the error: PostgreSQL would turn its COMMIT into a silent rollback.
        """
        self._ended = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        status = conn.info.transaction_status
        failed = commit and status != TransactionStatus.INTRANS
        try:
            if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                query = self._queries.commit if commit and not failed else self._queries.rollback
                with translated(self._db.connection_lost):
                    await conn.execute(query, prepare=False)
        finally:
            idle = conn.info.transaction_status == TransactionStatus.IDLE
            await self._db.give_back(conn, healthy=idle)
        if failed:
            raise KronikaError("this processing transaction failed earlier: rolled back")

    # -- Kronika's statements ---------------------------------------------------------------

    async def _cursor(self, query: bytes, params: dict[str, Any]) -> AsyncCursor[Any]:
        conn = await self._connection()
        with translated(self._db.connection_lost):
            return await conn.execute(query, params, prepare=True)

    async def _rows(self, query: bytes, params: dict[str, Any]) -> Rows:
        cur = await self._cursor(query, params)
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
        conn = await self._connection()
        with translated(self._db.connection_lost, handler_sql=True):
            if params:
                cur = await conn.execute(sql, params)
            else:
                cur = await conn.execute(sql, prepare=False)
        if conn.info.transaction_status == TransactionStatus.IDLE:
            raise ConfigurationError("a handler's SQL must not end the processing transaction")
        return cur
