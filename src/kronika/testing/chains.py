"""The conformance suite of hash chains (``store.chains``, see :mod:`kronika.store.integrity`).

Subclass :class:`ChainContract` in a test module and give it a ``store_url`` fixture
returning the URL of a fresh, empty store, as for
:class:`~kronika.testing.contract.EventStoreContract`. It checks that a backend stores the
documented chain hashes, that its purge path keeps a clean log clean, and that
:func:`kronika.store.verify.verify` runs, stops, resumes and records checkpoints on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from kronika.domain.events import StreamAppend
from kronika.store import open_store
from kronika.store.integrity import (
    ChainSource,
    Checkpoint,
    Prior,
    ScanRow,
    StreamTail,
    chain,
    chains_of,
    content_digest,
)
from kronika.store.protocol import EventStore
from kronika.store.verify import verify
from kronika.testing.contract import ev

__all__ = ["ChainContract"]

_HIGHEST = 2**63 - 1


async def fill(store: EventStore) -> None:
    """Several streams, multi-stream appends, tags, a truncation, deletions, a recreation."""
    for i in range(12):
        events = [ev("Placed", {"i": i, "f": 1e16, "z": -0.0}, tags=["t", f"n{i}"]), ev("Paid")]
        await store.append(f"order-{i % 4}", events)
    await store.append_multi(
        [StreamAppend("order-0", [ev("Shipped")]), StreamAppend("audit-1", [ev("Noted")])]
    )
    await store.truncate_stream("order-1", 3)
    await store.delete_stream("order-2")
    await store.append("order-2", [ev("Reopened")])
    await store.delete_stream("order-3", hard=True)
    await store.set_stream_metadata("empty-1", metadata={"a": 1})


class _PurgingSource:
    """A source that truncates a stream right after it returns the first page."""

    def __init__(self, store: EventStore, inner: ChainSource) -> None:
        self._store, self._inner, self._purged = store, inner, False

    async def scan_limit(self) -> int:
        return await self._inner.scan_limit()

    async def scan(self, after: int, upto: int, limit: int) -> list[ScanRow]:
        rows = await self._inner.scan(after, upto, limit)
        if not self._purged:
            self._purged = True
            await self._store.truncate_stream("order-0", 1)
        return rows

    async def priors(self, wanted: Sequence[tuple[str, int]]) -> dict[str, Prior]:
        return await self._inner.priors(wanted)

    async def tails(self, after: str, limit: int) -> list[StreamTail]:
        return await self._inner.tails(after, limit)

    async def checkpoints(self, after: int, upto: int) -> list[Checkpoint]:
        return await self._inner.checkpoints(after, upto)

    async def last_checkpoint(self) -> Checkpoint | None:
        return await self._inner.last_checkpoint()

    async def purges(self) -> int:
        return await self._inner.purges()

    async def record(self, checkpoint: Checkpoint, purges: int) -> bool:
        return await self._inner.record(checkpoint, purges)


@pytest.mark.asyncio
class ChainContract:
    """What ``kronika verify`` needs from a backend."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override: the URL of a fresh, empty store."""
        raise NotImplementedError("subclasses of ChainContract must define store_url")

    @pytest_asyncio.fixture
    async def store(self, store_url: str) -> AsyncIterator[EventStore]:
        """An open store on ``store_url``."""
        async with open_store(store_url) as store:
            yield store

    async def test_each_event_stores_the_documented_chain_hash(self, store: EventStore) -> None:
        await store.append("s-1", [ev("A", {"b": 2, "a": 1}, tags=["x", "y"]), ev("B")])
        await store.append("s-1", [ev("C", {"n": [1.5, 1e16]})])
        events = await store.read_stream("s-1")
        digests = [
            content_digest(e.stream, e.id, e.type, data=e.data, metadata=e.metadata, tags=e.tags)
            for e in events
        ]
        rows = await chains_of(store).scan(0, await chains_of(store).scan_limit(), 10)
        assert [row[4] for row in rows] == chain(None, digests)
        [tail] = await chains_of(store).tails("", 10)
        assert tail.hash == tail.last_hash == rows[-1][4]

    async def test_a_clean_log_with_purges_verifies_clean(self, store: EventStore) -> None:
        await fill(store)
        report = await verify(chains_of(store), checkpoint_every=5, page_size=4)
        assert report.clean, report.problems
        assert report.complete
        assert report.unchained == 0
        assert report.events == len(await store.read_all())
        assert report.streams == 6  # order-0..3, audit-1, empty-1
        assert report.checkpoints_recorded >= 2
        again = await verify(chains_of(store))
        assert again.clean, again.problems
        assert again.checkpoints_checked == report.checkpoints_recorded
        assert again.global_hash == report.global_hash

    async def test_a_purge_deletes_the_checkpoints_it_invalidates(self, store: EventStore) -> None:
        await fill(store)
        await store.append("late-1", [ev("A"), ev("B"), ev("C")])
        await store.append("other-1", [ev("D")])
        chains = chains_of(store)
        await verify(chains, checkpoint_every=3, page_size=3)
        recorded = await chains.checkpoints(0, _HIGHEST)
        lowest = (await store.read_stream("late-1"))[0].position
        purges = await chains.purges()
        await store.truncate_stream("late-1", 2)
        assert await chains.purges() > purges
        left = await chains.checkpoints(0, _HIGHEST)
        assert left == [c for c in recorded if c.position < lowest]
        assert left
        assert len(left) < len(recorded)
        report = await verify(chains)
        assert report.clean, report.problems
        assert report.checkpoints_checked == len(left)
        assert report.checkpoints_recorded == 1

    async def test_a_stopped_run_resumes_where_it_stopped(self, store: EventStore) -> None:
        await fill(store)
        chains = chains_of(store)
        first = await verify(chains, max_events=7, page_size=3)
        assert first.clean
        assert not first.complete
        assert first.events < 10
        last = await chains.last_checkpoint()
        assert last is not None
        assert last.position == first.last_position
        rest = await verify(chains, resume=True, page_size=3)
        assert rest.clean
        assert rest.complete
        assert rest.resumed_from == last
        full = await verify(chains)
        assert (rest.global_hash, rest.global_events) == (full.global_hash, full.global_events)
        assert first.events + rest.events == full.events

    async def test_appends_during_a_run_are_left_for_the_next(self, store: EventStore) -> None:
        await fill(store)

        async def write() -> None:
            for i in range(20):
                await store.append(f"live-{i % 3}", [ev("Live", {"i": i})])

        writer = asyncio.ensure_future(write())
        report = await verify(chains_of(store), page_size=2, checkpoint_every=2)
        await writer
        assert report.clean, report.problems
        after = await verify(chains_of(store))
        assert after.clean, after.problems

    async def test_no_checkpoint_over_events_purged_during_the_run(self, store: EventStore) -> None:
        await fill(store)
        report = await verify(_PurgingSource(store, chains_of(store)), page_size=3)
        assert report.purged_meanwhile
        assert report.checkpoints_recorded == 0
        assert await chains_of(store).last_checkpoint() is None
        assert (await verify(chains_of(store))).clean
