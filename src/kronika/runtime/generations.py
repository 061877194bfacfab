"""Read-model generations: where each version of a projection's read model lives.

A replay builds a projection's read model again, from the first event, *beside* the live
one (blue/green): each build is a numbered generation. The projection's own record says
which generation is live; every generation keeps its own checkpoints, failed keys and
leases under a name of its own, and writes its own documents and tables:

============  ====================  ====================  ====================
generation    state kept under      document collection   SQL table
============  ====================  ====================  ====================
1             ``totals-proj``       ``totals``            ``order_totals``
N (>= 2)      ``totals-proj~gN``    ``totals~gN``         ``order_totals__gN``
============  ====================  ====================  ====================

Generation 1 uses the plain names, so a projection that has never been replayed looks
exactly as it did before replays existed. Handlers reach the right names through
``ctx.documents`` and ``ctx.table(...)``; readers through :func:`read_model` and
:func:`live_table`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kronika.errors import ConfigurationError, NotFound
from kronika.store.processing import Documents, ProcessingStore

__all__ = [
    "GenerationDocuments",
    "collection_name",
    "generation_of",
    "live_generation",
    "live_table",
    "physical_name",
    "read_model",
    "scoped",
    "table_name",
]

_MARK = re.compile(r"^(?P<name>.+)~g(?P<generation>[0-9]+)$")


def physical_name(name: str, generation: int) -> str:
    """The name a generation's checkpoints, failures and leases are kept under."""
    return name if generation == 1 else f"{name}~g{generation}"


def generation_of(physical: str) -> tuple[str, int]:
    """``(processor name, generation)`` of a name made by :func:`physical_name`."""
    found = _MARK.match(physical)
    return (physical, 1) if found is None else (found["name"], int(found["generation"]))


def collection_name(collection: str, generation: int) -> str:
    """Where a generation keeps the documents of ``collection``."""
    return collection if generation == 1 else f"{collection}~g{generation}"


def table_name(table: str, generation: int) -> str:
    """Where a generation keeps the rows of ``table``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ConfigurationError(
            f"table name {table!r} must be a plain SQL identifier (letters, digits, _)"
        )
    return table if generation == 1 else f"{table}__g{generation}"


class GenerationDocuments:
    """Documents of one generation: collection names are mapped, nothing else changes."""

    def __init__(self, inner: Documents, generation: int) -> None:
        self._inner = inner
        self._generation = generation

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        return await self._inner.get(collection_name(collection, self._generation), key)

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        await self._inner.put(collection_name(collection, self._generation), key, document)

    async def delete(self, collection: str, key: str) -> None:
        await self._inner.delete(collection_name(collection, self._generation), key)


def scoped(documents: Documents, generation: int) -> Documents:
    """``documents`` as seen by one generation (itself for generation 1)."""
    return documents if generation == 1 else GenerationDocuments(documents, generation)


async def live_generation(processing: ProcessingStore, name: str) -> int:
    """The live generation of a processor (1 for one that has never run)."""
    record = await processing.processor(name)
    return 1 if record is None else record.generation


@asynccontextmanager
async def read_model(processing: ProcessingStore, name: str) -> AsyncIterator[Documents]:
    """The documents of a projection's live read model, whichever generation is live.

    Read through this rather than :meth:`ProcessingStore.documents_reader` and readers
    keep seeing a complete read model across replays and rollbacks.
    """
    generation = await live_generation(processing, name)
    async with processing.documents_reader() as documents:
        yield scoped(documents, generation)


async def live_table(processing: ProcessingStore, name: str, table: str) -> str:
    """The SQL table that holds ``table`` of a projection's live read model."""
    record = await processing.processor(name)
    if record is None:
        raise NotFound(f"processor {name!r} has never run")
    return table_name(table, record.generation)
