"""Runs of one buffered handler write sent as one statement, through a temporary function.

psycopg's ``executemany`` costs the client about 10 µs of CPU per row (a pipelined
Bind/Execute and a result per row), which is most of a projection's catch-up on
PostgreSQL. So a run of at least :data:`MIN_ROWS` buffered writes of one statement (see
:meth:`.processing_tx.PostgresTransaction.write`) is sent as one call instead: the
statement becomes the body of a temporary SQL function (in ``pg_temp``: one per
connection and statement, made the first time the connection sees a run of it) and the
run's parameters go as one array per parameter::

    SELECT count(pg_temp.kronika_write_3(a1, a2, a3))
    FROM unnest($1::text[], $2::double precision[], $3::bigint[]) AS u(a1, a2, a3)

The function runs the statement once per row, in order, in the caller's transaction, and
each run sees the rows before it (a ``VOLATILE`` function takes a new snapshot for each
statement): what ``executemany`` does, without a message per row. A failing row fails the
call, and so the transaction, as with ``executemany``.

The arrays are built here in PostgreSQL's binary format (:mod:`.arrays`, 0.1 µs a value
or less), not by psycopg's list adaptation (about 2 µs a row of three parameters: text
quoting, a regex search per string). Each array has the element type psycopg would have
given the list, so the server casts it to the parameter's type (``$1::integer[]`` of a
``smallint[]``, ``bigint[]``...) as before, with the same errors: ints as ``smallint``,
``integer`` or ``bigint`` (the smallest that holds the column), floats as ``double
precision``, then ``boolean``, ``bytea``, ``uuid``, ``date``, ``timestamp`` (naive) and
``timestamptz`` (aware). Strings, which psycopg sends untyped (parsed as the parameter's
type), go as ``text[]`` when the parameter is text or a type whose cast from text parses
its text (:data:`_FROM_TEXT`). A column of anything else (Decimal, time, timedelta, ints
beyond ``bigint``, strings with NUL or for another parameter type) is left to psycopg, as
it was.

The parameter types are the ones PostgreSQL infers for the statement (``PREPARE``). A run
goes with ``executemany`` when a parameter is not a plain scalar (a list, a dict, a JSON
wrapper...), when one column mixes Python types or holds only NULLs, or when the statement
cannot have a function: named parameters, a type PostgreSQL cannot infer, a body it
refuses, no privilege to create temporary objects (such a statement is not tried again on
that connection). Functions are made inside the transaction (in a savepoint, so a refusal
costs nothing else) and remembered for the connection only once it commits.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import re
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import AsyncCursor, sql

from kronika.store.postgres.arrays import (
    BigintArray,
    BoolArray,
    ByteaArray,
    DateArray,
    Float8Array,
    IntArray,
    PgArray,
    SmallintArray,
    TextArray,
    TimestampArray,
    TimestamptzArray,
    UuidArray,
)
from kronika.store.postgres.database import Connection

__all__ = ["MIN_ROWS", "Batched", "WriteRuns"]

MIN_ROWS = 8
"""Shorter runs go with ``executemany`` (making the arrays costs about what it saves)."""
_SCALARS = frozenset(
    {
        bool,
        int,
        float,
        str,
        bytes,
        decimal.Decimal,
        uuid.UUID,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
    }
)
"""Parameter types sent as array elements (binary arrays built here, or psycopg's lists;
PostgreSQL casts them)."""
_ZONED = frozenset({datetime.datetime, datetime.time})
_FROM_TEXT = frozenset(
    {
        "text",
        "character varying",
        "bpchar",
        "json",
        "jsonb",
        "uuid",
        "bytea",
        "boolean",
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "real",
        "double precision",
        "date",
        "time without time zone",
        "time with time zone",
        "timestamp without time zone",
        "timestamp with time zone",
        "interval",
        "inet",
        "cidr",
    }
)
"""Parameter types a string column goes to as ``text[]``: text itself, or a built-in type
whose cast from text is binary (varchar, char) or parses the text with the type's input
function, as psycopg's untyped string is parsed (not ``name``, ``"char"``, ``regclass``,
``xml``, whose casts from text are functions; nor a type of the database's own)."""
_SMALLINT = 2**15
_INTEGER = 2**31
_BIGINT = 2**63
_PLACEHOLDER = re.compile(r"%(\([^)]*\))?(.)", re.DOTALL)
"""psycopg's placeholders: ``%s``/``%b``/``%t``, ``%(name)s``, and ``%%`` for a ``%``."""
_NAMES = itertools.count(1)

Params = Sequence[Any] | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Batched:
    """How a run of one statement is sent as one call."""

    call: str
    """``SELECT count(pg_temp.f(a1, ...)) FROM unnest(%s::t1[], ...) AS u(a1, ...)``."""
    arity: int
    """Parameters per row."""
    types: tuple[str, ...]
    """The parameters' types, as PostgreSQL inferred and wrote them (``bigint``...)."""

    def arrays(self, rows: Sequence[Params], *, utf8: bool = True) -> list[Any] | None:
        """The call's parameters for ``rows``, or None if they cannot go as arrays (see
        :func:`columns`). ``utf8``: the connection's client encoding is UTF-8 (strings
        are encoded here only then)."""
        cols = columns(rows, self.arity)
        if cols is None:
            return None
        return [encoded(col, kind, utf8=utf8) for col, kind in zip(cols, self.types, strict=True)]


def positional(statement: str) -> tuple[str, int] | None:
    """``statement`` with psycopg's positional placeholders as ``$1, $2, ...`` and their count;
    None for named placeholders or anything psycopg would not accept."""
    count = 0
    parts: list[str] = []
    start = 0
    for match in _PLACEHOLDER.finditer(statement):
        name, kind = match.groups()
        parts.append(statement[start : match.start()])
        start = match.end()
        if name is None and kind == "%":
            parts.append("%")
        elif name is None and kind in "sbt":
            count += 1
            parts.append(f"${count}")
        else:
            return None
    parts.append(statement[start:])
    return "".join(parts), count


def columns(rows: Sequence[Params], arity: int) -> list[list[Any]] | None:
    """The rows' parameters as one list per parameter, or None if they cannot go as arrays
    (not all sequences of ``arity`` plain scalars of one Python type per column)."""
    if not all(issubclass(kind, list | tuple) for kind in set(map(type, rows))):
        return None
    if set(map(len, rows)) - {arity}:
        return None
    cols = [list(col) for col in zip(*rows, strict=True)]
    for col in cols:
        kinds = set(map(type, col))
        kinds.discard(type(None))
        if len(kinds) != 1 or not kinds <= _SCALARS:
            return None  # all NULL (no type to send), mixed, or not a plain scalar
        if kinds & _ZONED and len({v.tzinfo is None for v in col if v is not None}) > 1:
            return None  # naive and aware times are different PostgreSQL types
    return cols


def encoded(values: list[Any], kind: str, *, utf8: bool = True) -> PgArray | list[Any]:
    """One column of a run (one Python type and None, see :func:`columns`) as a binary array
    of the element type psycopg would have given it, or as is (psycopg adapts it) if there
    is no such array here for it. ``kind``: the parameter's type (see :data:`_FROM_TEXT`)."""
    first = next(v for v in values if v is not None)
    python = type(first)
    if python is int:
        return _ints(values)
    if python is str:
        return _strings(values) if utf8 and kind in _FROM_TEXT else values
    if python is datetime.datetime:
        return _datetimes(values, aware=first.tzinfo is not None)
    encode = _ENCODERS.get(python)
    return values if encode is None else encode(values)


def _ints(values: list[Any]) -> PgArray | list[Any]:
    """``smallint[]``, ``integer[]`` or ``bigint[]``: the first that holds every value (as
    psycopg chooses); beyond ``bigint``, psycopg sends ``numeric[]``."""
    try:
        low: int = min(values)
        high: int = max(values)
    except TypeError:  # None among them
        present = [v for v in values if v is not None]
        low, high = min(present), max(present)
    if _holds(_SMALLINT, low, high):
        return SmallintArray.of(values)
    if _holds(_INTEGER, low, high):
        return IntArray.of(values)
    if _holds(_BIGINT, low, high):
        return BigintArray.of(values)
    return values


def _holds(bound: int, low: int, high: int) -> bool:
    return low >= -bound and high < bound


def _strings(values: list[str | None]) -> PgArray | list[Any]:
    """``text[]``; as is for a NUL or an unencodable string (psycopg's error, as before)."""
    try:
        joined = "".join(values)  # type: ignore[arg-type]
    except TypeError:  # None among them
        joined = "".join([v for v in values if v is not None])
    if "\x00" in joined:
        return values
    try:
        return TextArray.of(values)
    except UnicodeEncodeError:
        return values


def _datetimes(values: list[datetime.datetime | None], *, aware: bool) -> PgArray | list[Any]:
    """``timestamptz[]`` (aware) or ``timestamp[]`` (naive); as is for a time zone without
    an offset (psycopg's matter)."""
    try:
        return TimestamptzArray.of(values) if aware else TimestampArray.of(values)
    except TypeError:
        return values


_ENCODERS: dict[type, Callable[[list[Any]], PgArray]] = {
    float: Float8Array.of,
    bool: BoolArray.of,
    bytes: ByteaArray.of,
    uuid.UUID: UuidArray.of,
    datetime.date: DateArray.of,
}
"""Binary arrays of the other Python types (Decimal, time and timedelta have none)."""


class WriteRuns:
    """The temporary functions of one processing transaction's connection.

    Made functions are known per connection (they live as long as its session); the ones
    made in this transaction count only once it commits (:meth:`committed`).
    """

    _known: ClassVar[weakref.WeakKeyDictionary[Connection, dict[str, Batched | None]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._made: dict[str, Batched | None] = {}
        """Decided in this transaction: a function made, or None (use executemany)."""
        self._conn: Connection | None = None

    def decided(self, conn: Connection, statement: str) -> bool:
        """Whether it is known if ``statement`` has a function on ``conn``."""
        known = self._known.get(conn)
        return statement in self._made or (known is not None and statement in known)

    def get(self, conn: Connection, statement: str) -> Batched | None:
        """The function for ``statement`` on ``conn``, if it has one."""
        if statement in self._made:
            return self._made[statement]
        known = self._known.get(conn)
        return None if known is None else known.get(statement)

    async def prepare(self, cur: AsyncCursor[Any], statement: str, rows: Sequence[Params]) -> None:
        """Make the function for ``statement`` on the cursor's connection (in a begun
        transaction), or decide that runs of it go with ``executemany``."""
        self._conn = cur.connection
        converted = positional(statement)
        if converted is None:
            self._made[statement] = None
            return
        body, arity = converted
        if columns(rows, arity) is None:
            return  # this run's values cannot go as arrays; a later run's may
        self._made[statement] = None if arity == 0 else await _make(cur, body, arity)

    def committed(self) -> None:
        """The transaction committed: its functions exist on the connection from now on."""
        if self._conn is not None and self._made:
            self._known.setdefault(self._conn, {}).update(self._made)
        self._made.clear()


async def _make(cur: AsyncCursor[Any], body: str, arity: int) -> Batched | None:
    """Create the function in a savepoint; None if PostgreSQL refuses (nothing is left)."""
    number = next(_NAMES)
    probe_name = f"kronika_write_probe_{number}"
    probe = sql.Identifier(probe_name)
    function = sql.Identifier("pg_temp", f"kronika_write_{number}")
    await cur.execute("SAVEPOINT kronika_write", prepare=False)
    try:
        # The body is the handler's own statement (what executemany would have run).
        await cur.execute(sql.SQL("PREPARE {} AS {}").format(probe, sql.SQL(body)), prepare=False)
        try:
            await cur.execute(
                # format_type(t, -1): a type's name without a length or precision
                # ("bpchar", not "character", which a cast reads as char(1)).
                "SELECT ARRAY(SELECT format_type(t, -1) FROM unnest(parameter_types)"
                " WITH ORDINALITY AS u(t, n) ORDER BY n) "
                "FROM pg_prepared_statements WHERE name = %s",
                [probe_name],
                prepare=False,
            )
            row = await cur.fetchone()
        finally:
            await cur.execute(sql.SQL("DEALLOCATE {}").format(probe), prepare=False)
        types: list[str] = list(row[0]) if row else []
        if len(types) != arity or "unknown" in types:
            raise psycopg.ProgrammingError("parameter types not inferred")
        kinds = [sql.SQL(kind) for kind in types]  # type names, as PostgreSQL wrote them
        await cur.execute(
            sql.SQL("CREATE FUNCTION {}({}) RETURNS void LANGUAGE sql VOLATILE AS {}").format(
                function, sql.SQL(", ").join(kinds), sql.Literal(body)
            ),
            prepare=False,
        )
    except psycopg.Error:
        await cur.execute("ROLLBACK TO SAVEPOINT kronika_write", prepare=False)
        await cur.execute("RELEASE SAVEPOINT kronika_write", prepare=False)
        return None
    await cur.execute("RELEASE SAVEPOINT kronika_write", prepare=False)
    names = sql.SQL(", ").join(sql.Identifier(f"a{i}") for i in range(1, arity + 1))
    arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(kind) for kind in kinds)
    call = sql.SQL("SELECT count({}({})) FROM unnest({}) AS u({})").format(
        function, names, arrays, names
    )
    return Batched(call=call.as_string(cur), arity=arity, types=tuple(types))
