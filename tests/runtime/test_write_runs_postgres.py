"""Long runs of one ``ctx.write`` statement on PostgreSQL: one call of a temporary function
over arrays of the parameters, which must mean exactly what ``executemany`` means.

Rows run in order, each seeing the ones before; a failing row rolls the transaction back;
whatever cannot go as arrays (named parameters, lists, mixed or NULL-only columns, a
statement PostgreSQL will not make a function of) goes with ``executemany``.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import kronika
from kronika.errors import KronikaError
from kronika.runtime.worker import processing_of
from kronika.store.postgres.write_runs import MIN_ROWS, _make, columns, positional
from kronika.store.protocol import EventStore

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[EventStore]:
    async with kronika.open_store(postgres_url) as opened:
        yield opened


def table(store: EventStore, name: str) -> str:
    return f'"{getattr(store, "schema", "")}".{name}'


async def create(store: EventStore, name: str, columns_sql: str) -> str:
    qualified = table(store, name)
    async with processing_of(store).transaction() as tx:
        await tx.execute(f"CREATE TABLE {qualified} ({columns_sql})")
    return qualified


async def fetch(store: EventStore, sql: str) -> list[tuple[Any, ...]]:
    async with processing_of(store).transaction() as tx:
        return await tx.fetch(sql)


async def functions_made(store: EventStore) -> int:
    """Temporary write functions on the connection a processing transaction gets now."""
    rows = await fetch(
        store,
        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'kronika_write_%' "
        "AND pronamespace = pg_my_temp_schema()",
    )
    return int(rows[0][0])


# -- the helpers ----------------------------------------------------------------------------


def test_placeholders_become_positional_parameters() -> None:
    assert positional("UPDATE t SET n = %s WHERE k = %s AND s LIKE 'a%%'") == (
        "UPDATE t SET n = $1 WHERE k = $2 AND s LIKE 'a%'",
        2,
    )
    assert positional("INSERT INTO t VALUES (%b, %t)") == ("INSERT INTO t VALUES ($1, $2)", 2)
    assert positional("UPDATE t SET n = %(n)s") is None
    assert positional("UPDATE t SET n = %d") is None


def test_only_plain_scalars_of_one_type_per_column_go_as_arrays() -> None:
    assert columns([("a", 1), ("b", None)], 2) == [["a", "b"], [1, None]]
    assert columns([("a", 1), ("b", 2.5)], 2) is None  # int and float in one column
    assert columns([("a", None), ("b", None)], 2) is None  # no type to send
    assert columns([("a", [1]), ("b", [2])], 2) is None  # a list would be flattened
    assert columns([("a", {"x": 1}), ("b", {})], 2) is None
    assert columns([{"k": "a"}, {"k": "b"}], 1) is None  # named parameters
    assert columns([("a", 1), ("b",)], 2) is None
    naive, aware = datetime.datetime(2026, 1, 1), datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert columns([(naive,), (aware,)], 1) is None
    assert columns([(aware,), (None,), (aware,)], 1) == [[aware, None, aware]]


# -- meaning what executemany means -----------------------------------------------------------


async def test_a_run_updates_the_same_rows_in_order(store: EventStore) -> None:
    name = await create(store, "totals", "k TEXT PRIMARY KEY, n INTEGER NOT NULL")
    upsert = (
        f"INSERT INTO {name} (k, n) VALUES (%s, 1) ON CONFLICT (k) DO UPDATE SET n = {name}.n + 1"
    )
    double = f"UPDATE {name} SET n = n * 2 WHERE k = %s"
    async with processing_of(store).transaction() as tx:
        for i in range(40):
            await tx.write(upsert, [f"k{i % 3}"])
        for _ in range(MIN_ROWS):
            await tx.write(double, ["k0"])  # after the upserts: 14 * 2**8
        for _ in range(MIN_ROWS):
            await tx.write(upsert, ["k0"])
    found = dict(await fetch(store, f"SELECT k, n FROM {name}"))
    assert found == {"k0": 14 * 2**MIN_ROWS + MIN_ROWS, "k1": 13, "k2": 13}
    assert await functions_made(store) >= 2  # the long runs went through functions


async def test_values_of_every_scalar_type_arrive_unchanged(store: EventStore) -> None:
    name = await create(
        store,
        "typed",
        "id INTEGER PRIMARY KEY, t TEXT, f DOUBLE PRECISION, b BOOLEAN, u UUID, "
        "at TIMESTAMPTZ, d NUMERIC, j JSONB, day DATE, raw BYTEA, big BIGINT",
    )
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    rows = [
        (
            i,
            f"text 'quoted' %s {i}" if i % 2 else None,
            i / 3,
            i % 2 == 0,
            uuid.UUID(int=i + 1),
            at + datetime.timedelta(days=i),
            decimal.Decimal(f"{i}.25"),
            f'{{"n": {i}}}',
            datetime.date(2026, 1, 1 + i),
            bytes([i, 0, 255]),
            2**40 if i % 2 else i,  # small and large integers in one column
        )
        for i in range(MIN_ROWS * 2)
    ]
    marks = ", ".join(["%s"] * 11)
    async with processing_of(store).transaction() as tx:
        for row in rows:
            await tx.write(f"INSERT INTO {name} VALUES ({marks})", row)
    stored = await fetch(store, f"SELECT * FROM {name} ORDER BY id")
    assert [(*r[:7], r[7]["n"], *r[8:]) for r in stored] == [(*r[:7], r[0], *r[8:]) for r in rows]


async def test_a_failing_row_rolls_back_the_whole_transaction(store: EventStore) -> None:
    name = await create(store, "unique_keys", "k TEXT PRIMARY KEY")
    insert = f"INSERT INTO {name} (k) VALUES (%s)"

    async def duplicate_in_a_long_run() -> None:
        async with processing_of(store).transaction() as tx:
            for i in range(MIN_ROWS * 2):
                await tx.write(insert, [f"k{i}" if i != 11 else "k3"])
            await tx.set_checkpoint("runs", 0, 5)

    await processing_of(store).register_processor("runs", 1)
    with pytest.raises(KronikaError, match=r"(?i)duplicate key"):
        await duplicate_in_a_long_run()
    assert await fetch(store, f"SELECT count(*) FROM {name}") == [(0,)]
    async with processing_of(store).transaction() as tx:  # the connection goes on
        for i in range(MIN_ROWS * 2):
            await tx.write(insert, [f"k{i}"])
    assert await fetch(store, f"SELECT count(*) FROM {name}") == [(MIN_ROWS * 2,)]


async def test_a_function_made_in_a_rolled_back_transaction_is_made_again(
    store: EventStore,
) -> None:
    name = await create(store, "again", "k TEXT, n INTEGER")
    insert = f"INSERT INTO {name} (k, n) VALUES (%s, %s)"

    async def write_run(fail: bool) -> None:
        async with processing_of(store).transaction() as tx:
            for i in range(MIN_ROWS):
                await tx.write(insert, ["k", i])
            await tx.fetch("SELECT 1")  # runs the writes (and makes the function)
            if fail:
                raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await write_run(fail=True)
    await write_run(fail=False)
    await write_run(fail=False)
    assert await fetch(store, f"SELECT count(*), sum(n) FROM {name}") == [
        (MIN_ROWS * 2, 2 * sum(range(MIN_ROWS)))
    ]


async def test_what_cannot_go_as_arrays_goes_with_executemany(store: EventStore) -> None:
    name = await create(store, "fallback", "k TEXT, v JSONB, n DOUBLE PRECISION")
    async with processing_of(store).transaction() as tx:
        for i in range(MIN_ROWS):  # named parameters
            await tx.write(
                f"INSERT INTO {name} (k, n) VALUES (%(k)s, %(n)s)", {"k": "named", "n": i}
            )
        for i in range(MIN_ROWS):  # a JSON wrapper: not a plain scalar
            await tx.write(
                f"INSERT INTO {name} (k, v) VALUES (%s, %s)",
                ["json", kronika.store.postgres.database.RawJson(b'{"i": %d}' % i)],
            )
        for i in range(MIN_ROWS):  # ints and floats in one column
            await tx.write(
                f"INSERT INTO {name} (k, n) VALUES (%s, %s)", ["mixed", i if i % 2 else i / 2]
            )
    counted = dict(await fetch(store, f"SELECT k, count(*) FROM {name} GROUP BY k"))
    assert counted == {"named": MIN_ROWS, "json": MIN_ROWS, "mixed": MIN_ROWS}
    made = await functions_made(store)
    async with processing_of(store).transaction() as tx:  # plain floats now: a function
        for i in range(MIN_ROWS):
            await tx.write(f"INSERT INTO {name} (k, n) VALUES (%s, %s)", ["floats", i / 2])
    assert await functions_made(store) == made + 1
    assert await fetch(store, f"SELECT sum(n) FROM {name} WHERE k = 'floats'") == [
        (sum(range(MIN_ROWS)) / 2,)
    ]


async def test_a_statement_postgresql_refuses_leaves_the_transaction_usable(
    store: EventStore,
) -> None:
    """Making the function runs in a savepoint: a refusal is not the transaction's error."""
    async with processing_of(store).transaction() as tx:
        await tx.fetch("SELECT 1")
        cur = tx._cur  # type: ignore[attr-defined]
        assert await _make(cur, "INSERT INTO nowhere VALUES ($1)", 1) is None
        assert await tx.fetch("SELECT 2") == [(2,)]
