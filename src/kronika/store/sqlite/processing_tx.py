"""Processing transactions on SQLite: read-model writes, checkpoints and failures together.

A transaction takes the processing connection (and SQLite's write lock) at its first
statement, not when it is created: a handler that does slow work or appends events before
touching the database does not hold up other transactions or the store's writer. Its
statements then run on the caller's thread, without a hop to the connection's thread
(see :mod:`.processing_connection`); only ``BEGIN`` and ``COMMIT`` take the hop.

A handler's writes whose row count it does not need (:meth:`SQLiteTransaction.write`) wait
in the transaction and run before its next statement, checkpoint or commit, each run of
one statement with one ``executemany``: one call into ``sqlite3`` per run instead of a
stack of Python calls per row. Their errors surface there, inside the transaction. A
write does not take the connection either: a batch whose handlers only write runs them
all while other transactions hold the connection (or wait for their commit's fsync), and
then holds it only for its statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kronika.errors import ConfigurationError
from kronika.store.base import decode_json, encode_json
from kronika.store.processing import FailedKey, LeaseLost, unencodable_parameter
from kronika.store.sqlite.errors import translate_statement
from kronika.store.sqlite.processing_connection import ProcessingConnection
from kronika.store.sqlite.processing_rows import failure_params, now_micros
from kronika.store.sqlite.sql import QUERIES

__all__ = ["SQLiteDocuments", "SQLiteTransaction"]

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class Run(Protocol):
    """Runs ``function(connection, *args)`` on some connection's thread."""

    def __call__(self, function: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


class SQLiteDocuments:
    """JSON documents in the ``documents`` table, stored as JSON text."""

    def __init__(self, run: Run, namespace: str, *, writable: bool) -> None:
        self._run = run
        self._namespace = namespace
        self._writable = writable

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        return await self._run(_get_document, self._params(collection, key))

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        params = self._writable_params(collection, key)
        params["data"] = encode_json(document, "document").decode()
        await self._run(_write, "save_document", params)

    async def delete(self, collection: str, key: str) -> None:
        await self._run(_write, "delete_document", self._writable_params(collection, key))

    def _params(self, collection: str, key: str) -> dict[str, Any]:
        return {"namespace": self._namespace, "collection": collection, "key": key}

    def _writable_params(self, collection: str, key: str) -> dict[str, Any]:
        if not self._writable:
            raise ConfigurationError("documents are written inside a processing transaction")
        return self._params(collection, key)


class SQLiteTransaction:
    """One processing transaction; :meth:`end` commits or rolls it back."""

    def __init__(self, connection: ProcessingConnection, namespace: str, path: Path) -> None:
        self._connection = connection
        self._namespace = namespace
        self._path = path
        self._begun = False
        self._ended = False
        self._writes: list[tuple[str, Params]] = []
        """A handler's buffered writes (:meth:`write`), in order."""
        self.documents = SQLiteDocuments(self._run, namespace, writable=True)

    async def _begin(self) -> None:
        if self._ended:
            raise ConfigurationError("this processing transaction has ended")
        if not self._begun:
            await self._connection.begin()
            self._begun = True

    async def _run(self, function: Callable[..., T], /, *args: Any) -> T:
        await self._begin()
        if self._writes:  # whatever runs next may read them
            self._flush()
        return self._connection.run_here(function, *args)

    def _flush(self) -> None:
        writes, self._writes = self._writes, []
        self._connection.run_here(_write_all, writes, self._path)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(_execute, sql, params, self._path)

    async def write(self, sql: str, params: Params) -> None:
        """Buffer a handler's write whose result it does not need; it runs before the
        transaction's next statement, checkpoint or commit (consecutive writes of one
        statement with one ``executemany``). Its errors surface there, inside this
        transaction, so it still rolls back."""
        if not params:
            raise ConfigurationError("write() takes parameters; use execute() for plain SQL")
        if self._ended:
            raise ConfigurationError("this processing transaction has ended")
        self._writes.append((sql, params))

    async def fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return await self._run(_fetch, sql, params, self._path)

    async def set_checkpoint(
        self, processor: str, partition: int, position: int, *, owner: str | None = None
    ) -> None:
        params = {
            "namespace": self._namespace,
            "processor": processor,
            "partition": partition,
            "position": position,
        }
        await self._run(_set_checkpoint, params, owner)

    async def save_failure(self, failure: FailedKey) -> None:
        await self._run(_write, "save_failure", failure_params(self._namespace, failure))

    async def clear_request(self, processor: str, key: str) -> None:
        await self._run(_write, "clear_request", self._key_params(processor, key))

    async def clear_failure(self, processor: str, key: str) -> None:
        await self._run(_write, "delete_failure", self._key_params(processor, key))

    def _key_params(self, processor: str, key: str) -> dict[str, Any]:
        return {"namespace": self._namespace, "processor": processor, "key": key}

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) what was written, if anything; the transaction is over."""
        if commit and self._writes and not self._ended:
            try:
                await self._begin()
                self._flush()
            except BaseException:
                await self.end(commit=False)
                raise
        self._ended = True
        self._writes.clear()
        if self._begun:
            self._begun = False
            await self._connection.end(commit=commit)


# -- on the processing connection's thread -----------------------------------------------------


def _statement(conn: sqlite3.Connection, sql: str, params: Params, path: Path) -> sqlite3.Cursor:
    """Run a handler's own SQL; its errors are reported with SQLite's message."""
    try:
        cursor = conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise _handler_error(exc, path) from exc
    except UnicodeEncodeError as exc:
        raise unencodable_parameter(exc) from exc
    if not conn.in_transaction:
        raise ConfigurationError(_ENDED)
    return cursor


_ENDED = "a handler's SQL must not end the processing transaction"


def _handler_error(exc: sqlite3.Error, path: Path) -> Exception:
    """A handler's statement that SQLite refused; the authorizer of the processing
    connection denies transaction statements (see :mod:`.processing_connection`)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_AUTH:
        return ConfigurationError(f"{_ENDED} (BEGIN, COMMIT and ROLLBACK are Kronika's)")
    return translate_statement(exc, path)


def _write_all(conn: sqlite3.Connection, writes: list[tuple[str, Params]], path: Path) -> None:
    """Run buffered writes in order, each run of one statement with one ``executemany``."""
    start = 0
    while start < len(writes):
        sql, end = writes[start][0], start + 1
        while end < len(writes) and writes[end][0] == sql:
            end += 1
        if end - start == 1:
            _statement(conn, sql, writes[start][1], path)
        else:
            _many(conn, sql, [params for _, params in writes[start:end]], path)
        start = end


def _many(conn: sqlite3.Connection, sql: str, rows: list[Params], path: Path) -> None:
    try:
        conn.executemany(sql, rows)
    except sqlite3.ProgrammingError as exc:
        if "DML" not in str(exc):  # e.g. a wrong number of parameters
            raise _handler_error(exc, path) from exc
        for params in rows:  # a statement executemany() refuses: one by one
            _statement(conn, sql, params, path)
    except sqlite3.Error as exc:
        raise _handler_error(exc, path) from exc
    except UnicodeEncodeError as exc:
        raise unencodable_parameter(exc) from exc
    if not conn.in_transaction:
        raise ConfigurationError(_ENDED)


def _execute(conn: sqlite3.Connection, sql: str, params: Params, path: Path) -> int:
    return _statement(conn, sql, params, path).rowcount


def _fetch(conn: sqlite3.Connection, sql: str, params: Params, path: Path) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = _statement(conn, sql, params, path).fetchall()
    return rows


def _set_checkpoint(conn: sqlite3.Connection, params: dict[str, Any], owner: str | None) -> None:
    if owner is None:
        conn.execute(QUERIES["save_checkpoint"], params)
        return
    fenced = {**params, "owner": owner, "now": now_micros()}
    if conn.execute(QUERIES["save_fenced_checkpoint"], fenced).rowcount == 0:
        processor, partition = params["processor"], params["partition"]
        raise LeaseLost(f"{processor} partition {partition} is no longer leased to {owner}")


def _write(conn: sqlite3.Connection, query: str, params: dict[str, Any]) -> None:
    conn.execute(QUERIES[query], params)


def _get_document(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any] | None:
    row = conn.execute(QUERIES["select_document"], params).fetchone()
    return None if row is None else decode_json(row[0])
