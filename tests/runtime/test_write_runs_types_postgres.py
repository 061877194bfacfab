"""The binary arrays of a write run mean what psycopg's lists meant, type by type.

Each case makes the run's function for one column of one PostgreSQL type, then calls it
twice in a savepoint: with the columns as plain lists (psycopg adapts them: how runs were
sent before the binary arrays) and with :meth:`Batched.arrays`. What the table holds
afterwards (as PostgreSQL prints it), or the error, must be the same.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import kronika
from kronika.errors import KronikaError
from kronika.runtime.worker import processing_of
from kronika.store.postgres.arrays import PgArray
from kronika.store.postgres.database import ADAPTERS
from kronika.store.postgres.write_runs import MIN_ROWS, Batched, _make, columns, positional
from kronika.store.protocol import EventStore

pytestmark = pytest.mark.postgres

UTC = datetime.UTC
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
AT = datetime.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
NAIVE = AT.replace(tzinfo=None)
TRICKY = ["", "NULL", "null", " padded ", 'q"uote', "back\\slash", "{a,b}", "tab\there", "ünï"]

# (column type, the run's values (None is NULL), whether it goes as a binary array)
CASES: list[tuple[str, list[Any], bool]] = [
    ("text", [*TRICKY, None, "x"], True),
    ("varchar(5)", ["abc", None, "abcde"], True),
    ("varchar(5)", ["abc", "too long"], True),  # 22001 either way
    ("char(3)", ["a", "ab ", None, "abc"], True),
    ("bit(4)", ["1010", None, "0001"], False),
    ("jsonb", ['{"a": [1, 2]}', "null", None, '"s"', "1.50"], True),
    ("jsonb", ['{"a": 1}', "{oops"], True),  # invalid JSON: 22P02
    ("json", ['{"b": 1, "a": 2}', None], True),
    ("uuid", [str(uuid.UUID(int=7)), None, "{00000000-0000-0000-0000-000000000008}"], True),
    ("uuid", ["not a uuid"], True),
    ("uuid", [uuid.UUID(int=1), None, uuid.UUID(int=2**128 - 1)], True),
    ("bytea", [bytes(range(256)), b"", None, b"\\x00"], True),
    ("bytea", ["\\x00ff", "plain"], True),
    ("boolean", [True, False, None], True),
    ("boolean", ["t", "no", "1"], True),
    ("boolean", [0, 1], True),  # smallint[] to boolean[]: no cast, either way
    ("smallint", [1, -(2**15), 2**15 - 1, None], True),
    ("smallint", [1, 2**15], True),  # integer[] to smallint[]: out of range
    ("integer", [0, -(2**31), 2**31 - 1, None], True),
    ("integer", [1, 2**40], True),  # bigint[] to integer[]: 22003
    ("integer", [1, 2**70], False),  # numeric[]: left to psycopg, 22003
    ("bigint", [0, -(2**63), 2**63 - 1, None, 5], True),
    ("bigint", [2**63], False),
    ("bigint", ["12", "-3"], True),
    ("numeric", [1, 2**62, -(2**40), None], True),
    ("numeric", [2**100, 3], False),
    ("numeric", [decimal.Decimal("1.10"), decimal.Decimal("NaN"), None], False),
    ("numeric", [0.1, 1e300, float("inf")], True),  # float8 to numeric, as before
    ("numeric", ["1.10", "-0"], True),
    ("double precision", [0.1, -0.0, float("nan"), float("inf"), -1e308, 5e-324, None], True),
    ("double precision", [1, 2**53 + 1, -7], True),
    ("real", [0.1, 3.4e38, None], True),
    ("real", [1e39], True),  # 22003 either way
    ("real", [1e-50], True),
    ("text", [1, 2**40, None], True),  # integer arrays cast to text[]
    ("text", [0.1, float("nan")], True),
    ("text", [True, None], True),
    ("text", [AT, None], True),
    (
        "timestamptz",
        [AT, None, AT.astimezone(KOLKATA), datetime.datetime.max.replace(tzinfo=UTC)],
        True,
    ),
    (
        "timestamptz",
        [
            datetime.datetime.min.replace(tzinfo=UTC),
            AT.astimezone(zoneinfo.ZoneInfo("America/New_York")),
        ],
        True,
    ),
    ("timestamptz", [NAIVE, None], True),  # timestamp[]: the session's time zone applies
    ("timestamptz", ["2026-01-01 00:00:00+02", "2026-01-01"], True),
    ("timestamp", [NAIVE, datetime.datetime.min, datetime.datetime.max], True),
    ("timestamp", [AT.astimezone(KOLKATA)], True),  # timestamptz[] to timestamp[]
    ("date", [datetime.date(2026, 2, 28), datetime.date.min, datetime.date.max, None], True),
    ("date", [NAIVE], True),  # timestamp[] to date[]
    ("date", ["2026-02-28"], True),
    ("time", [datetime.time(1, 2, 3, 4), None], False),
    ("time", ["01:02:03"], True),
    ("interval", [datetime.timedelta(days=1, seconds=5), datetime.timedelta(-1)], False),
    ("interval", ["1 day 2 hours"], True),
    ("inet", ["10.0.0.1", "::1/128"], True),
    ("name", ["a name", None], False),  # text to name is a function: left to psycopg
    ('"char"', ["\\101", "b"], False),
    ("xml", ["<a/>"], False),
    ("regclass", ["pg_class"], False),
    ("mood", ["happy", "sad"], False),  # an enum: a type of the database's own
]


@pytest.fixture
async def conn(postgres_server: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection as Kronika makes them, in a transaction that is rolled back."""
    async with await psycopg.AsyncConnection.connect(
        postgres_server, context=ADAPTERS, prepare_threshold=0
    ) as connection:
        await connection.execute("SET TIME ZONE 'Asia/Kolkata'")
        await connection.execute("CREATE TYPE pg_temp.mood AS ENUM ('happy', 'sad')")
        yield connection
        await connection.rollback()


async def outcome(cur: psycopg.AsyncCursor[Any], call: str, params: list[Any]) -> Any:
    """What the call leaves in the table, or the error it raises (then undone)."""
    await cur.execute("SAVEPOINT outcome", prepare=False)
    try:
        await cur.execute(call, params)
        await cur.execute("SELECT v::text FROM kronika_typed ORDER BY id")
        result: Any = await cur.fetchall()
    except (psycopg.Error, UnicodeError) as exc:
        result = (type(exc), getattr(exc, "sqlstate", None), str(exc).splitlines()[0])
    await cur.execute("ROLLBACK TO SAVEPOINT outcome", prepare=False)
    return result


async def batched_for(cur: psycopg.AsyncCursor[Any], column_type: str) -> Batched:
    await cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS kronika_typed (id serial, v {column_type})")
    converted = positional("INSERT INTO kronika_typed (v) VALUES (%s)")
    assert converted is not None
    batched = await _make(cur, *converted)
    assert batched is not None
    return batched


@pytest.mark.parametrize(("column_type", "values", "binary"), CASES)
async def test_binary_arrays_mean_what_psycopg_lists_meant(
    conn: psycopg.AsyncConnection[Any], column_type: str, values: list[Any], binary: bool
) -> None:
    cur = conn.cursor()
    await cur.execute("SAVEPOINT case_start", prepare=False)
    batched = await batched_for(cur, column_type)
    rows = [(v,) for v in values]
    before = await outcome(cur, batched.call, columns(rows, 1) or [])
    params = batched.arrays(rows)
    assert params is not None
    assert isinstance(params[0], PgArray) == binary
    assert await outcome(cur, batched.call, params) == before
    await cur.execute("ROLLBACK TO SAVEPOINT case_start", prepare=False)


@pytest.mark.parametrize(
    ("column_type", "values"),
    [("char(3)", ["abc", "ab", None]), ("bit(4)", ["1010", "0001"]), ("numeric(6,2)", [1.5])],
)
async def test_a_run_stores_what_one_insert_per_row_stores(
    conn: psycopg.AsyncConnection[Any], column_type: str, values: list[Any]
) -> None:
    # The function's parameters and the call's casts carry no length: a char(3) value is
    # not cut to char(1), a bit(4) value is not refused as bit(1).
    cur = conn.cursor()
    await cur.execute("SAVEPOINT case_start", prepare=False)
    batched = await batched_for(cur, column_type)
    rows = [(v,) for v in values]
    params = batched.arrays(rows)
    assert params is not None
    via_run = await outcome(cur, batched.call, params)
    await cur.execute("SAVEPOINT plain", prepare=False)
    await cur.executemany("INSERT INTO kronika_typed (v) VALUES (%s)", rows)
    await cur.execute("SELECT v::text FROM kronika_typed ORDER BY id")
    plain = await cur.fetchall()
    await cur.execute("ROLLBACK TO SAVEPOINT plain", prepare=False)
    assert via_run == plain
    await cur.execute("ROLLBACK TO SAVEPOINT case_start", prepare=False)


@pytest.mark.parametrize(
    "values",
    [["a\x00b", "c"], ["\ud800", "c"]],
    ids=["NUL", "surrogate"],
)
async def test_strings_psycopg_refuses_are_refused_as_before(
    conn: psycopg.AsyncConnection[Any], values: list[str]
) -> None:
    cur = conn.cursor()
    batched = await batched_for(cur, "text")
    rows = [(v,) for v in values]
    params = batched.arrays(rows)
    assert params is not None
    assert not isinstance(params[0], PgArray)  # left to psycopg, which refuses it
    before = await outcome(cur, batched.call, columns(rows, 1) or [])
    assert isinstance(before, tuple)
    assert await outcome(cur, batched.call, params) == before


async def test_strings_go_as_text_only_where_the_cast_from_text_parses(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """The types :data:`_FROM_TEXT` lists have no cast from text but a binary one."""
    from kronika.store.postgres.write_runs import _FROM_TEXT

    cur = await conn.execute(
        "SELECT format_type(c.casttarget, -1), c.castmethod FROM pg_cast c "
        "WHERE c.castsource = 'text'::regtype AND format_type(c.casttarget, -1) = ANY(%s)",
        [sorted(_FROM_TEXT)],
    )
    casts = dict(await cur.fetchall())
    assert casts == {"character varying": "b", "bpchar": "b"}


# -- through a processing transaction ------------------------------------------------------


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[EventStore]:
    async with kronika.open_store(postgres_url) as opened:
        yield opened


async def test_a_run_with_null_columns_and_every_binary_kind(store: EventStore) -> None:
    """NULLs inside columns, and a column of only NULLs (that run goes with executemany)."""
    name = f'"{getattr(store, "schema", "")}".mixed'
    async with processing_of(store).transaction() as tx:
        await tx.execute(
            f"CREATE TABLE {name} (id INTEGER, t TEXT, f DOUBLE PRECISION, b BOOLEAN, "
            "u UUID, at TIMESTAMPTZ, day DATE, raw BYTEA, small SMALLINT, n NUMERIC)"
        )
    insert = f"INSERT INTO {name} VALUES ({', '.join(['%s'] * 10)})"
    rows = [
        (
            i,
            None if i % 3 == 0 else f"t{i}",
            None if i % 4 == 0 else i / 4,
            None if i % 5 == 0 else i % 2 == 0,
            None if i % 2 == 0 else uuid.UUID(int=i),
            None if i % 3 == 1 else AT + datetime.timedelta(hours=i),
            None if i % 3 == 2 else datetime.date(2026, 1, 1 + i),
            None if i % 2 == 1 else bytes([i]),
            None if i == 4 else i - 8,
            i * 10**10,
        )
        for i in range(MIN_ROWS * 2)
    ]
    nulls = [(100 + i, *([None] * 9)) for i in range(MIN_ROWS)]
    for run in (rows, nulls):  # one transaction each: two runs
        async with processing_of(store).transaction() as tx:
            for row in run:
                await tx.write(insert, row)
    async with processing_of(store).transaction() as tx:
        stored = await tx.fetch(f"SELECT * FROM {name} ORDER BY id")
    assert stored == rows + nulls  # (numerics come back as Decimal, equal to the ints)


async def test_an_overflowing_int_fails_the_transaction_as_before(store: EventStore) -> None:
    """Beyond integer (a bigint[] the server casts) and beyond bigint (psycopg's numeric[]):
    PostgreSQL's 22003 reaches the handler as a KronikaError, and nothing is written."""
    name = f'"{getattr(store, "schema", "")}".small'
    async with processing_of(store).transaction() as tx:
        await tx.execute(f"CREATE TABLE {name} (n INTEGER)")

    async def run_with(too_big: int) -> None:
        async with processing_of(store).transaction() as tx:
            for i in range(MIN_ROWS):
                await tx.write(f"INSERT INTO {name} VALUES (%s)", [too_big if i == 5 else i])

    for too_big in (2**40, 2**70):
        with pytest.raises(KronikaError, match=r"22003.*integer out of range"):
            await run_with(too_big)
    async with processing_of(store).transaction() as tx:
        assert await tx.fetch(f"SELECT count(*) FROM {name}") == [(0,)]
