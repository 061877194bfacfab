"""An append's round trip, on libpq directly: one prepared statement, one wait.

psycopg's ``execute`` costs every call about 50 µs of client CPU and 20 µs of system time
beyond the round trip (measured here): a cursor, the adaptation of each parameter, the
bookkeeping of its prepared-statement cache, two waits on the socket and the loading of the
result. Every parameter of ``kronika_append`` is already in binary wire format (see
:mod:`.arrays`), and its result is three small arrays. So each pooled connection prepares
the append statement once, under its own name, when it is opened; an append sends its
parameters with ``PQsendQueryPrepared``, waits once for the whole result (psycopg's
``AsyncConnection.wait``, which also cancels the query if the caller is cancelled) and reads
the arrays itself. Errors are psycopg's own exceptions, built from the result, so callers
handle and translate them as any other.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import generators, postgres
from psycopg.pq import ExecStatus, Format

from kronika.store.postgres.arrays import PgArray
from kronika.store.postgres.database import Connection, RawJson

__all__ = ["AppendCall", "AppendRow"]

AppendRow = tuple[list[int], list[int], list[uuid.UUID] | None]
"""The append's result: versions and last positions per part, and the ids found stored."""

STATEMENT = b"kronika_append"
"""The prepared statement's name on every pooled connection."""

_TYPES = {
    "namespace": "text",
    "streams": "text[]",
    "expected": "int8[]",
    "counts": "int4[]",
    "keys": "int8[]",
    "exclusive": "int8[]",
    "ids": "uuid[]",
    "types": "text[]",
    "data": "jsonb[]",
    "metadata": "jsonb[]",
    "tags": "text[]",
    "correlations": "text[]",
    "digests": "bytea[]",
    "condition": "jsonb",
    "lookup": "bool",
}
"""The type of each parameter of the ``append`` query, by name."""

_PLACEHOLDER = re.compile(rb"%\((\w+)\)[sb]")
_ARRAY_HEADER = struct.Struct(">iiiii")
_INT8 = struct.Struct(">iq")
_UUID_SIZE = 4 + 16


def _oid(name: str) -> int:
    if name.endswith("[]"):
        return postgres.types[name[:-2]].array_oid
    return postgres.types[name].oid


class AppendCall:
    """The rendered ``append`` query (with psycopg's ``%(name)s`` placeholders) as a prepared
    statement."""

    def __init__(self, query: bytes) -> None:
        names: list[str] = []

        def number(match: re.Match[bytes]) -> bytes:
            name = match[1].decode()
            if name not in names:
                names.append(name)
            return b"$%d" % (names.index(name) + 1)

        self._sql = _PLACEHOLDER.sub(number, query)
        self._names = tuple(names)
        self._oids = [_oid(_TYPES[name]) for name in names]
        self._formats = [Format.BINARY] * len(names)

    async def prepare(self, conn: Connection) -> None:
        """Prepare the statement on a new connection."""
        conn.pgconn.send_prepare(STATEMENT, self._sql, self._oids)
        await _result(conn)

    async def __call__(self, conn: Connection, params: Mapping[str, Any]) -> AppendRow:
        """Run the prepared statement with ``params`` (as :func:`.appends.append_params`
        builds them) and return its row."""
        values = [_wire(params[name]) for name in self._names]
        try:
            result = await self._run(conn, values)
        except psycopg.errors.InvalidSqlStatementName:
            # psycopg deallocates every prepared statement of a connection after a ROLLBACK
            # or DROP on it (its own cache may be stale then); the statement did not run.
            await self.prepare(conn)
            result = await self._run(conn, values)
        return (
            _int8_array(result.get_value(0, 0)),
            _int8_array(result.get_value(0, 1)),
            _uuid_array(result.get_value(0, 2)),
        )

    async def _run(self, conn: Connection, values: list[bytes | None]) -> Any:
        conn.pgconn.send_query_prepared(
            STATEMENT, values, self._formats, result_format=Format.BINARY
        )
        return await _result(conn)


async def _result(conn: Connection) -> Any:
    """The last result of the statement sent, or psycopg's exception for its error."""
    results = await conn.wait(generators.execute(conn.pgconn))
    result = results[-1]
    if result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
        return result
    raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


def _wire(value: object) -> bytes | None:
    """A parameter in binary wire format."""
    if isinstance(value, PgArray):
        return value.data
    if value is None:
        return None
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, RawJson):
        return b"\x01" + value.data  # jsonb version 1
    raise TypeError(f"no wire format for a {type(value).__name__} parameter")


def _int8_array(raw: bytes | None) -> list[int]:
    """A one-dimensional ``bigint[]`` without NULLs, from its binary form."""
    if raw is None or len(raw) <= 12:  # NULL, or no dimensions: empty
        return []
    count = _ARRAY_HEADER.unpack_from(raw)[3]
    unpack = _INT8.unpack_from
    return [unpack(raw, 20 + 12 * i)[1] for i in range(count)]


def _uuid_array(raw: bytes | None) -> list[uuid.UUID] | None:
    """A one-dimensional ``uuid[]`` without NULLs, from its binary form (None if NULL)."""
    if raw is None:
        return None
    if len(raw) <= 12:
        return []
    count = _ARRAY_HEADER.unpack_from(raw)[3]
    return [uuid.UUID(bytes=raw[24 + _UUID_SIZE * i : 40 + _UUID_SIZE * i]) for i in range(count)]
