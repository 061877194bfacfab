"""Array parameters in PostgreSQL's binary format, built directly from Python values.

An append sends its events as parallel arrays (ids, types, payloads, ...). psycopg's generic
list adaptation costs tens of microseconds per list; building the binary wire format here
(one ``bytes.join`` per array) costs about a microsecond per element, and the server reads
it without any text parsing or escaping (``jsonb`` elements are parsed once, directly).

Wire format (``array_recv``): ndim, has-nulls flag, element type oid, then per dimension its
length and lower bound (1), then each element as a 4-byte length (-1 for NULL) and its bytes.
All integers are big-endian.

Every kind but ``jsonb`` takes ``None`` elements (sent as NULL): the arrays of a run of
handler writes (see :mod:`.write_runs`) may have them.
"""

from __future__ import annotations

import datetime
import functools
import struct
import uuid
from collections.abc import Sequence

from psycopg import postgres
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format

__all__ = [
    "BigintArray",
    "BoolArray",
    "ByteaArray",
    "DateArray",
    "Float8Array",
    "IntArray",
    "JsonbArray",
    "PgArray",
    "SmallintArray",
    "TextArray",
    "TimestampArray",
    "TimestamptzArray",
    "UuidArray",
    "register_array_dumpers",
]

_HEADER = struct.Struct(">iiiii").pack
_LENGTH = struct.Struct(">i").pack
_NULL = b"\xff\xff\xff\xff"


def _array(element_oid: int, items: list[bytes | None]) -> bytes:
    """The wire format of a one-dimensional array of already-encoded elements."""
    count = len(items)
    if count == 1 and items[0] is not None:  # the common case, kept cheap
        return _HEADER(1, 0, element_oid, 1, 1) + _LENGTH(len(items[0])) + items[0]
    if count == 0:
        return _HEADER(0, 0, element_oid, 0, 0)[:12]
    parts = [_HEADER(1, None in items, element_oid, count, 1)]
    for item in items:
        if item is None:
            parts.append(_NULL)
        else:
            parts.append(_LENGTH(len(item)))
            parts.append(item)
    return b"".join(parts)


def _fixed(element_oid: int, code: str, size: int, values: Sequence[float | None]) -> bytes:
    """The wire format of an array of fixed-size numbers (``code``: a struct format);
    ``None`` elements are NULL."""
    count = len(values)
    if count == 0:
        return _HEADER(0, 0, element_oid, 0, 0)[:12]
    try:
        return _fixed_struct(code, count).pack(
            1, 0, element_oid, count, 1, *_with_sizes(size, values)
        )
    except struct.error:
        if not any(v is None for v in values):
            raise
    return _with_nulls(element_oid, code, size, values)


def _with_nulls(element_oid: int, code: str, size: int, values: Sequence[float | None]) -> bytes:
    """:func:`_fixed` for values with ``None`` among them (one format per NULL pattern)."""
    value = "i" + code
    layout = "".join(["i" if v is None else value for v in values])
    fields = [x for v in values for x in ((-1,) if v is None else (size, v))]
    return struct.pack(">iiiii" + layout, 1, 1, element_oid, len(values), 1, *fields)


@functools.lru_cache(maxsize=256)
def _fixed_struct(code: str, count: int) -> struct.Struct:
    return struct.Struct(">iiiii" + ("i" + code) * count)


def _with_sizes(size: int, values: Sequence[float | None]) -> list[float | None]:
    """``size, value`` for each value, flat (what :func:`_fixed_struct` packs)."""
    if len(values) == 1:
        return [size, values[0]]
    fields: list[float | None] = [size] * (2 * len(values))
    fields[1::2] = values
    return fields


class PgArray:
    """A one-dimensional array already in binary wire format (a query parameter)."""

    __slots__ = ("data",)
    element_oid = 0

    def __init__(self, data: bytes) -> None:
        self.data = data


class UuidArray(PgArray):
    """``uuid[]``."""

    __slots__ = ()
    element_oid = postgres.types["uuid"].oid

    @classmethod
    def of(cls, values: list[uuid.UUID] | list[uuid.UUID | None]) -> UuidArray:
        """The array of ``values`` (``None`` elements are NULL)."""
        try:
            items: list[bytes | None] = [v.bytes for v in values]  # type: ignore[union-attr]
        except AttributeError:
            items = [None if v is None else v.bytes for v in values]
        return cls(_array(cls.element_oid, items))


class TextArray(PgArray):
    """``text[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["text"].oid

    @classmethod
    def of(cls, values: list[str | None]) -> TextArray:
        """The array of ``values``."""
        return cls(_array(cls.element_oid, [None if v is None else v.encode() for v in values]))


class JsonbArray(PgArray):
    """``jsonb[]`` from JSON documents already serialised to bytes."""

    __slots__ = ()
    element_oid = postgres.types["jsonb"].oid

    @classmethod
    def of(cls, values: list[bytes]) -> JsonbArray:
        """The array of ``values`` (each a JSON document, sent as jsonb version 1)."""
        return cls(_array(cls.element_oid, [b"\x01" + v for v in values]))


class ByteaArray(PgArray):
    """``bytea[]`` (hash digests; ``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["bytea"].oid

    @classmethod
    def of(cls, values: list[bytes] | list[bytes | None]) -> ByteaArray:
        """The array of ``values``."""
        return cls(_array(cls.element_oid, list(values)))


class SmallintArray(PgArray):
    """``smallint[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["int2"].oid

    @classmethod
    def of(cls, values: list[int] | list[int | None]) -> SmallintArray:
        """The array of ``values`` (each must fit: else :class:`struct.error`)."""
        return cls(_fixed(cls.element_oid, "h", 2, values))


class IntArray(PgArray):
    """``integer[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["int4"].oid

    @classmethod
    def of(cls, values: list[int] | list[int | None]) -> IntArray:
        """The array of ``values``."""
        return cls(_fixed(cls.element_oid, "i", 4, values))

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def of_small(cls, values: tuple[int, ...]) -> IntArray:
        """The array of ``values``, cached (for the few shapes most appends have)."""
        return cls.of(list(values))


class BigintArray(PgArray):
    """``bigint[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["int8"].oid

    @classmethod
    def of(cls, values: list[int] | list[int | None]) -> BigintArray:
        """The array of ``values``."""
        return cls(_fixed(cls.element_oid, "q", 8, values))

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def of_small(cls, values: tuple[int, ...]) -> BigintArray:
        """The array of ``values``, cached (for the few shapes most appends have)."""
        return cls.of(list(values))


class Float8Array(PgArray):
    """``double precision[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["float8"].oid

    @classmethod
    def of(cls, values: list[float] | list[float | None]) -> Float8Array:
        """The array of ``values`` (IEEE 754 doubles, NaN and infinities included)."""
        return cls(_fixed(cls.element_oid, "d", 8, values))


class BoolArray(PgArray):
    """``boolean[]`` (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["bool"].oid

    @classmethod
    def of(cls, values: list[bool] | list[bool | None]) -> BoolArray:
        """The array of ``values``."""
        # "b", not "?": struct packs None as False with "?", and as an error (NULL) with "b".
        return cls(_fixed(cls.element_oid, "b", 1, values))


_DATE_EPOCH = datetime.date(2000, 1, 1)
_EPOCH = datetime.datetime(2000, 1, 1)  # the epoch of naive timestamps
_UTC_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


class DateArray(PgArray):
    """``date[]``: days since 2000-01-01 (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["date"].oid

    @classmethod
    def of(cls, values: list[datetime.date] | list[datetime.date | None]) -> DateArray:
        """The array of ``values`` (dates, not datetimes)."""
        days = [None if v is None else (v - _DATE_EPOCH).days for v in values]
        return cls(_fixed(cls.element_oid, "i", 4, days))


class TimestampArray(PgArray):
    """``timestamp[]``: microseconds since 2000-01-01 (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["timestamp"].oid

    @classmethod
    def of(cls, values: list[datetime.datetime] | list[datetime.datetime | None]) -> TimestampArray:
        """The array of naive ``values`` (:class:`TypeError` for an aware one)."""
        micros = [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
        return cls(_fixed(cls.element_oid, "q", 8, micros))


class TimestamptzArray(PgArray):
    """``timestamptz[]``: microseconds since 2000-01-01 UTC (``None`` elements are NULL)."""

    __slots__ = ()
    element_oid = postgres.types["timestamptz"].oid

    @classmethod
    def of(
        cls, values: list[datetime.datetime] | list[datetime.datetime | None]
    ) -> TimestamptzArray:
        """The array of aware ``values`` (:class:`TypeError` for a naive one)."""
        micros = [None if v is None else (v - _UTC_EPOCH) // _MICROSECOND for v in values]
        return cls(_fixed(cls.element_oid, "q", 8, micros))


_KINDS: tuple[type[PgArray], ...] = (
    UuidArray,
    TextArray,
    JsonbArray,
    ByteaArray,
    SmallintArray,
    IntArray,
    BigintArray,
    Float8Array,
    BoolArray,
    DateArray,
    TimestampArray,
    TimestamptzArray,
)


def _dumper_for(array: type[PgArray]) -> type[Dumper]:
    element = postgres.types.get(array.element_oid)
    if element is None:
        raise LookupError(f"no PostgreSQL type with oid {array.element_oid}")
    array_oid = element.array_oid

    class _ArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: PgArray) -> bytes:
            return obj.data

    return _ArrayDumper


def register_array_dumpers(adapters: AdaptersMap) -> None:
    """Let ``adapters`` send every :class:`PgArray` kind as a binary parameter."""
    for array in _KINDS:
        adapters.register_dumper(array, _dumper_for(array))
