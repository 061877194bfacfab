"""Processing transactions on SQLite: read-model writes, checkpoints and failures together.

A transaction takes the processing connection (and SQLite's write lock) at its first
statement, not when it is created: a handler that does slow work or appends events before
touching the database does not hold up other transactions or the store's writer. Its
statements then run on the caller's thread, without a hop to the connection's thread
(see :mod:`.processing_connection`); only ``BEGIN`` and ``COMMIT`` take the hop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kronika.errors import ConfigurationError
from kronika.store.base import decode_json, encode_json
from kronika.store.processing import FailedKey, LeaseLost
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
        self.documents = SQLiteDocuments(self._run, namespace, writable=True)

    async def _run(self, function: Callable[..., T], /, *args: Any) -> T:
        if self._ended:
            raise ConfigurationError("this processing transaction has ended")
        if not self._begun:
            await self._connection.begin()
            self._begun = True
        return self._connection.run_here(function, *args)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(_execute, sql, params, self._path)

    async def write(self, sql: str, params: Params) -> None:
        """Run a handler's write whose result it does not need (SQLite runs it at once)."""
        if not params:
            raise ConfigurationError("write() takes parameters; use execute() for plain SQL")
        await self.execute(sql, params)

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
        self._ended = True
        if self._begun:
            self._begun = False
            await self._connection.end(commit=commit)


# -- on the processing connection's thread -----------------------------------------------------


def _statement(conn: sqlite3.Connection, sql: str, params: Params, path: Path) -> sqlite3.Cursor:
    """Run a handler's own SQL; its errors are reported with SQLite's message."""
    try:
        cursor = conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise translate_statement(exc, path) from exc
    if not conn.in_transaction:
        raise ConfigurationError("a handler's SQL must not end the processing transaction")
    return cursor


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
