"""Array parameters in PostgreSQL's binary format, built directly from Python values.

An append sends its events as parallel arrays (ids, types, payloads, ...). psycopg's generic
list adaptation costs tens of microseconds per list; building the binary wire format here
(one ``bytes.join`` per array) costs about a microsecond per element, and the server reads
it without any text parsing or escaping (``jsonb`` elements are parsed once, directly).

Wire format (``array_recv``): ndim, has-nulls flag, element type oid, then per dimension its
length and lower bound (1), then each element as a 4-byte length (-1 for NULL) and its bytes.
All integers are big-endian.
"""

from __future__ import annotations

import functools
import struct
import uuid

from psycopg import postgres
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format

__all__ = [
    "BigintArray",
    "ByteaArray",
    "IntArray",
    "JsonbArray",
    "PgArray",
    "TextArray",
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


def _fixed(element_oid: int, code: str, size: int, values: list[int]) -> bytes:
    """The wire format of an array of fixed-size integers (``code``: a struct format)."""
    count = len(values)
    if count == 0:
        return _HEADER(0, 0, element_oid, 0, 0)[:12]
    return _fixed_struct(code, count).pack(1, 0, element_oid, count, 1, *_with_sizes(size, values))


@functools.lru_cache(maxsize=256)
def _fixed_struct(code: str, count: int) -> struct.Struct:
    return struct.Struct(">iiiii" + ("i" + code) * count)


def _with_sizes(size: int, values: list[int]) -> list[int]:
    if len(values) == 1:
        return [size, values[0]]
    return [x for v in values for x in (size, v)]


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
    def of(cls, values: list[uuid.UUID]) -> UuidArray:
        """The array of ``values``."""
        return cls(_array(cls.element_oid, [v.bytes for v in values]))


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
    """``bytea[]`` (hash digests)."""

    __slots__ = ()
    element_oid = postgres.types["bytea"].oid

    @classmethod
    def of(cls, values: list[bytes]) -> ByteaArray:
        """The array of ``values``."""
        return cls(_array(cls.element_oid, list(values)))


class IntArray(PgArray):
    """``integer[]``."""

    __slots__ = ()
    element_oid = postgres.types["int4"].oid

    @classmethod
    def of(cls, values: list[int]) -> IntArray:
        """The array of ``values``."""
        return cls(_fixed(cls.element_oid, "i", 4, values))

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def of_small(cls, values: tuple[int, ...]) -> IntArray:
        """The array of ``values``, cached (for the few shapes most appends have)."""
        return cls.of(list(values))


class BigintArray(PgArray):
    """``bigint[]``."""

    __slots__ = ()
    element_oid = postgres.types["int8"].oid

    @classmethod
    def of(cls, values: list[int]) -> BigintArray:
        """The array of ``values``."""
        return cls(_fixed(cls.element_oid, "q", 8, values))

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def of_small(cls, values: tuple[int, ...]) -> BigintArray:
        """The array of ``values``, cached (for the few shapes most appends have)."""
        return cls.of(list(values))


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
    for array in (UuidArray, TextArray, JsonbArray, ByteaArray, IntArray, BigintArray):
        adapters.register_dumper(array, _dumper_for(array))
