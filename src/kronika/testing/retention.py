"""The conformance suite of ``store.retention`` (:class:`~kronika.store.retention.RetentionStore`).

Subclass :class:`RetentionContract` in a test module and give it a ``store_url`` fixture
returning the URL of a fresh, empty store, as for
:class:`~kronika.testing.contract.EventStoreContract`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from kronika.errors import ValidationError
from kronika.store import open_store
from kronika.store.protocol import EventStore
from kronika.store.retention import RetentionStore, SnapshotRule, retention_of
from kronika.testing.contract import ev

__all__ = ["RetentionContract"]


@pytest.mark.asyncio
class RetentionContract:
    """What retention needs from a backend: streams with limits, snapshots by rule."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override: the URL of a fresh, empty store."""
        raise NotImplementedError("subclasses of RetentionContract must define store_url")

    @pytest_asyncio.fixture
    async def store(self, store_url: str) -> AsyncIterator[EventStore]:
        """An open store on ``store_url``."""
        async with open_store(store_url) as store:
            yield store

    @pytest.fixture
    def retention(self, store: EventStore) -> RetentionStore:
        """The store's retention queries."""
        return retention_of(store)

    async def test_limited_streams_are_active_streams_with_limits_in_name_order(
        self, store: EventStore, retention: RetentionStore
    ) -> None:
        for name in ("s-c", "s-a", "s-b", "s-plain", "s-gone", "s-dead"):
            await store.append(name, [ev(), ev()])
        await store.set_stream_metadata("s-c", max_age=60)
        await store.set_stream_metadata("s-a", max_count=1)
        await store.set_stream_metadata("s-b", max_age=30, max_count=5)
        await store.set_stream_metadata("s-gone", max_count=1)
        await store.delete_stream("s-gone")
        await store.set_stream_metadata("s-dead", max_count=1)
        await store.delete_stream("s-dead", hard=True)
        found = await retention.limited_streams()
        assert [(i.stream, i.max_age, i.max_count) for i in found] == [
            ("s-a", None, 1),
            ("s-b", 30, 5),
            ("s-c", 60, None),
        ]
        assert (found[0].version, found[0].truncated_before) == (1, 0)

    async def test_limited_streams_page_with_a_cursor(
        self, store: EventStore, retention: RetentionStore
    ) -> None:
        for n in range(5):
            await store.append(f"s-{n}", [ev()])
            await store.set_stream_metadata(f"s-{n}", max_count=1)
        first = await retention.limited_streams(limit=2)
        rest = await retention.limited_streams(after=first[-1].stream, limit=10)
        assert [i.stream for i in first + rest] == [f"s-{n}" for n in range(5)]
        with pytest.raises(ValidationError):
            await retention.limited_streams(limit=0)

    async def test_orphaned_snapshots_are_those_of_streams_that_are_not_active(
        self, store: EventStore, retention: RetentionStore
    ) -> None:
        for name in ("s-1", "s-2"):
            await store.append(name, [ev()])
            await store.write_snapshot(name, 0, {"n": 1})
        await store.delete_stream("s-2")
        await store.write_snapshot("s-2", 0, {"n": 1})  # written after the soft delete
        orphaned = SnapshotRule(orphaned=True)
        assert await retention.count_snapshots(orphaned) == 1
        assert await retention.count_snapshots(SnapshotRule()) == 0
        assert await retention.delete_snapshots(orphaned, limit=10) == 1
        assert await store.read_snapshot("s-2") is None
        assert await store.read_snapshot("s-1") is not None
        assert await retention.count_snapshots(orphaned) == 0

    async def test_old_snapshots_are_deleted_at_most_limit_at_a_time(
        self, store: EventStore, retention: RetentionStore
    ) -> None:
        for n in range(3):
            await store.append(f"s-{n}", [ev()])
            await store.write_snapshot(f"s-{n}", 0, {"n": n})
        await asyncio.sleep(0.05)
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await store.append("s-new", [ev()])
        await store.write_snapshot("s-new", 0, {"n": 9})
        old = SnapshotRule(recorded_before=cutoff)
        assert await retention.count_snapshots(old) == 3
        assert await retention.delete_snapshots(old, limit=2) == 2
        assert await retention.count_snapshots(old) == 1
        assert await retention.delete_snapshots(old, limit=2) == 1
        assert await retention.delete_snapshots(old, limit=2) == 0
        assert await store.read_snapshot("s-new") is not None
        with pytest.raises(ValidationError):
            await retention.delete_snapshots(old, limit=0)

    async def test_rewriting_a_snapshot_makes_it_new(
        self, store: EventStore, retention: RetentionStore
    ) -> None:
        await store.append("s-1", [ev(), ev()])
        await store.write_snapshot("s-1", 0, {"n": 1})
        await asyncio.sleep(0.05)
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await store.write_snapshot("s-1", 1, {"n": 2})
        assert await retention.count_snapshots(SnapshotRule(recorded_before=cutoff)) == 0

    async def test_retention_is_per_namespace(
        self, store_url: str, store: EventStore, retention: RetentionStore
    ) -> None:
        await store.append("s-1", [ev()])
        await store.set_stream_metadata("s-1", max_count=1)
        await store.write_snapshot("s-1", 0, {"n": 1})
        await store.delete_stream("s-1")
        await store.write_snapshot("s-1", 0, {"n": 1})
        async with open_store(store_url, namespace="other") as other:
            theirs = retention_of(other)
            await other.append("s-2", [ev()])
            await other.set_stream_metadata("s-2", max_count=1)
            assert [i.stream for i in await theirs.limited_streams()] == ["s-2"]
            assert await theirs.count_snapshots(SnapshotRule(orphaned=True)) == 0
            assert await theirs.delete_snapshots(SnapshotRule(orphaned=True), limit=5) == 0
        assert await retention.count_snapshots(SnapshotRule(orphaned=True)) == 1
