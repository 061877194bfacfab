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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import AsyncCursor, sql

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
"""Parameter types sent as array elements (psycopg dumps them; PostgreSQL casts them)."""
_ZONED = frozenset({datetime.datetime, datetime.time})
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
    if not all(isinstance(row, list | tuple) and len(row) == arity for row in rows):
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
                "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = %s",
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
    return Batched(call=call.as_string(cur), arity=arity)
