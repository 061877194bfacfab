"""The binary column arrays of a write run, without a server: byte for byte what psycopg's
own binary list dumper makes of the same list, and psycopg's list where there is none."""

from __future__ import annotations

import datetime
import decimal
import struct
import uuid
import zoneinfo
from typing import Any

import pytest

pytest.importorskip("psycopg")

from psycopg import postgres
from psycopg.adapt import PyFormat, Transformer

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
from kronika.store.postgres.database import ADAPTERS
from kronika.store.postgres.write_runs import Batched, encoded

AT = datetime.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=datetime.UTC)
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")

SAME_AS_PSYCOPG: list[tuple[list[Any], type[PgArray]]] = [
    (["a", None, "", 'q"uote\\', "ünï", "NULL"], TextArray),
    ([1, None, -(2**15), 2**15 - 1], SmallintArray),
    ([1, -(2**15) - 1], IntArray),
    ([2**15, None, -(2**31), 2**31 - 1], IntArray),
    ([2**31, None], BigintArray),
    ([-(2**63), 2**63 - 1, 0], BigintArray),
    ([0.1, None, -0.0, float("inf"), 5e-324], Float8Array),
    ([True, False, None], BoolArray),
    ([b"", None, bytes(range(256))], ByteaArray),
    ([uuid.UUID(int=1), None, uuid.UUID(int=2**128 - 1)], UuidArray),
    ([datetime.date(2026, 2, 28), None, datetime.date.min, datetime.date.max], DateArray),
    ([AT.replace(tzinfo=None), None, datetime.datetime.min, datetime.datetime.max], TimestampArray),
    (
        [AT, None, AT.astimezone(KOLKATA), datetime.datetime.max.replace(tzinfo=datetime.UTC)],
        TimestamptzArray,
    ),
    ([None, 1.5], Float8Array),
    ([7] * 100, SmallintArray),
]


def psycopg_binary(values: list[Any]) -> tuple[int, bytes]:
    """The array type and binary data psycopg makes of ``values`` in binary format."""
    tx = Transformer(ADAPTERS)
    (data,) = tx.dump_sequence([values], [PyFormat.BINARY])
    assert data is not None
    assert tx.types is not None
    return tx.types[0], bytes(data)


def psycopg_text_oid(values: list[Any]) -> int:
    """The array type psycopg gives ``values`` for a ``%s`` (text format, as runs went)."""
    tx = Transformer(ADAPTERS)
    tx.dump_sequence([values], [PyFormat.AUTO])
    assert tx.types is not None
    return tx.types[0]


@pytest.mark.parametrize(("values", "kind"), SAME_AS_PSYCOPG)
def test_a_column_is_the_array_psycopg_would_have_sent(
    values: list[Any], kind: type[PgArray]
) -> None:
    array = encoded(values, "text")
    assert type(array) is kind
    array_oid, data = psycopg_binary(values)
    assert array.data == data
    element = postgres.types.get(kind.element_oid)
    assert element is not None
    assert array_oid == element.array_oid
    if kind is not TextArray:  # psycopg sends strings untyped (unknown) in text format
        assert psycopg_text_oid(values) == array_oid


class NoOffset(datetime.tzinfo):
    """A time zone that knows no offset: its datetimes count as naive in Python."""

    def utcoffset(self, dt: datetime.datetime | None) -> None:
        return None

    def dst(self, dt: datetime.datetime | None) -> None:
        return None

    def tzname(self, dt: datetime.datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([decimal.Decimal("1.5"), None], "numeric"),
        ([datetime.time(1, 2), None], "time without time zone"),
        ([datetime.timedelta(1)], "interval"),
        ([2**63, 1], "bigint"),
        ([-(2**63) - 1], "numeric"),
        (["a\x00b", "c"], "text"),
        (["\ud800"], "text"),
        (["a name"], "name"),
        (["\\101"], '"char"'),
        (["happy"], "mood"),
        ([datetime.datetime(2026, 1, 1, tzinfo=NoOffset())], "timestamp with time zone"),
    ],
)
def test_what_has_no_array_here_is_left_to_psycopg(values: list[Any], kind: str) -> None:
    assert encoded(values, kind) is values


def test_strings_are_left_to_psycopg_unless_the_client_encoding_is_utf8() -> None:
    assert isinstance(encoded(["a"], "text"), TextArray)
    assert encoded(["a"], "text", utf8=False) == ["a"]


def test_a_batched_run_gives_one_parameter_per_column() -> None:
    batched = Batched(call="", arity=3, types=("text", "double precision", "bigint"))
    params = batched.arrays([("a", 1.5, 2**40), ("b", None, 3)] * 4)
    assert params is not None
    assert [type(p) for p in params] == [TextArray, Float8Array, BigintArray]
    assert batched.arrays([("a", None, 1), ("b", None, 2)]) is None  # a column of NULLs only


def test_fixed_arrays_still_refuse_values_that_do_not_fit() -> None:
    with pytest.raises(struct.error):
        SmallintArray.of([2**15])
    with pytest.raises(struct.error):
        IntArray.of([None, 2**31])
