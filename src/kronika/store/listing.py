"""Listing streams: which names a listing returns, and the key range every backend scans.

:meth:`~kronika.store.protocol.EventStore.list_streams` returns streams in name order
(code point order, which is also the byte order of their UTF-8 and so the order of the
SQL backends' ``streams`` primary key), after an exclusive cursor, optionally only names
starting with a prefix and only streams of one category. Both filters become one range of
names, ``[low, high)``, so a backend reads only the index entries it returns; the category
keeps a residual check (``category_of(name) == category``) for the few names in its range
that belong to another category (``order x`` sorts between ``order`` and ``order-1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kronika.domain import names
from kronika.domain.events import category_of
from kronika.errors import ValidationError

__all__ = ["CEILING", "PAGE_LIMIT", "StreamSelection"]

PAGE_LIMIT = 1_000
"""Most streams one page of ``GET /v1/streams`` holds (the HTTP client fetches pages)."""

_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)

CEILING = chr(_MAX_CHAR) * (names.MAX_STREAM_LENGTH + 1)
"""A string above every valid stream name (each is at most MAX_STREAM_LENGTH characters)."""


def _successor(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix``."""
    stripped = prefix.rstrip(chr(_MAX_CHAR))
    if not stripped:
        return CEILING
    code = ord(stripped[-1]) + 1
    if code in _SURROGATES:  # not a character of a valid name: skip to the next one
        code = _SURROGATES.stop
    return stripped[:-1] + chr(code)


def _check_category(value: object) -> str | None:
    if value is None:
        return None
    category = names.check_name(value, "category", names.MAX_STREAM_LENGTH)
    if "-" in category:
        raise ValidationError("a category is a stream name's part before the first '-'", "category")
    return category


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSelection:
    """Validated arguments of a stream listing."""

    after: str | None = None
    """Return only names after this one (the cursor: the last name of the previous page)."""
    prefix: str | None = None
    """Return only names starting with this."""
    category: str | None = None
    """Return only streams of this category (the name before its first ``-``)."""
    limit: int | None = None
    """Return at most this many streams (``None``: all)."""

    @classmethod
    def checked(
        cls,
        *,
        after: object = None,
        prefix: object = None,
        category: object = None,
        limit: object = None,
    ) -> StreamSelection:
        """Validate each argument, naming the one that is wrong."""
        return cls(
            after=None if after is None else names.check_stream(after, "after"),
            prefix=None if prefix is None else names.check_stream(prefix, "prefix"),
            category=_check_category(category),
            limit=names.check_limit(limit),
        )

    @property
    def low(self) -> str:
        """The smallest name the filters allow (inclusive)."""
        return max(self.prefix or "", self.category or "")

    @property
    def high(self) -> str:
        """The name every selected one is below (exclusive; :data:`CEILING` if unbounded)."""
        bounds = [CEILING]
        if self.prefix is not None:
            bounds.append(_successor(self.prefix))
        if self.category is not None:
            bounds.append(self.category + ".")  # "." follows "-": the category and "category-..."
        return min(bounds)

    @property
    def start(self) -> str:
        """The inclusive lower bound with the cursor folded in: ``after`` followed by the
        smallest character, U+0000. Only for backends whose text may hold it (SQLite, the
        memory store); PostgreSQL text cannot, so it takes ``after`` and :attr:`low` apart."""
        if self.after is None:
            return self.low
        return max(self.low, self.after + "\x00")

    def matches(self, stream: str) -> bool:
        """Whether ``stream`` belongs in the listing (the memory store's whole filter)."""
        if self.after is not None and stream <= self.after:
            return False
        if not self.low <= stream < self.high:
            return False
        return self.category is None or category_of(stream) == self.category
