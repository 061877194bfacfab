"""What the store's namespace-wide parts (API keys, retention, hash chains) share: the
namespace they work on, and the ways into the open store's database."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from kronika.store.sqlite.readers import ReaderPool
from kronika.store.sqlite.writer import Writer

__all__ = ["StorePart"]

P = ParamSpec("P")
T = TypeVar("T")


class StorePart:
    """A part of a SQLite store that works on one namespace of its file: reads run on the
    reader pool, writes on the writer thread like every other write.

    ``writer`` and ``readers`` return the open store's writer and reader pool (raising
    ``StoreClosed`` when it is closed).
    """

    def __init__(
        self, namespace: str, writer: Callable[[], Writer], readers: Callable[[], ReaderPool]
    ) -> None:
        self._namespace = namespace
        self._writer = writer
        self._readers = readers

    async def _read(
        self,
        function: Callable[Concatenate[sqlite3.Connection, str, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(connection, namespace, *args, **kwargs)`` on a reader thread."""
        return await self._readers().run(function, self._namespace, *args, **kwargs)

    async def _write(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function(connection)`` in a transaction of the writer thread."""
        return await self._writer().call(function)
