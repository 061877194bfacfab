"""The event store conformance suite. Every backend, Kronika's own and third-party, runs it.

Subclass :class:`EventStoreContract` in a test module and give it a ``store_url`` fixture
that returns the URL of a fresh, empty store (two stores opened on the URL must share
their data)::

    class TestMyBackend(EventStoreContract):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mybackend:///{tmp_path}/db"

The suite needs ``pytest`` and ``pytest-asyncio``. Class attributes tune its size.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio

from kronika.domain.context import caused_by
from kronika.domain.events import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendCondition,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
)
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    ConflictError,
    DuplicateEventError,
    StoreClosed,
    StreamDeleted,
    StreamNotFound,
    ValidationError,
)
from kronika.store import open_store
from kronika.store.protocol import EventStore

__all__ = ["EventStoreContract", "SnapshotContract", "collect", "ev"]


def ev(type_: str = "Happened", data: dict[str, Any] | None = None, **kwargs: Any) -> NewEvent:
    """A short way to make a :class:`NewEvent` in tests."""
    return NewEvent(type_, {"n": 0} if data is None else data, **kwargs)


async def collect(
    store: EventStore, count: int, *, timeout: float = 30.0, **subscribe_args: Any
) -> list[RecordedEvent]:
    """The first ``count`` events of a subscription (fails the test after ``timeout``)."""
    seen: list[RecordedEvent] = []

    async def run() -> None:
        async for event in store.subscribe(**subscribe_args):
            seen.append(event)
            if len(seen) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return seen


@pytest.mark.asyncio
class EventStoreContract:
    """The behaviour every :class:`kronika.EventStore` must show."""

    concurrency_writers = 8
    """Concurrent writer tasks in the concurrency proof."""
    concurrency_events = 2_000
    """Events appended in total by the concurrency proof."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override: the URL of a fresh, empty store."""
        raise NotImplementedError("subclasses of EventStoreContract must define store_url")

    @pytest_asyncio.fixture
    async def store(self, store_url: str) -> AsyncIterator[EventStore]:
        """An open store on ``store_url``."""
        async with open_store(store_url) as store:
            yield store

    @pytest.fixture
    def another(self, store_url: str) -> Callable[..., AbstractAsyncContextManager[EventStore]]:
        """Open a second store object on the same URL (optionally another namespace)."""

        @asynccontextmanager
        async def opener(**options: Any) -> AsyncIterator[EventStore]:
            async with open_store(store_url, **options) as other:
                yield other

        return opener

    # -- appending and reading a stream ----------------------------------------------

    async def test_append_to_a_new_stream_numbers_versions_from_zero(
        self, store: EventStore
    ) -> None:
        result = await store.append(
            "order-1", [ev("A"), ev("B"), ev("C")], expected_version=NO_STREAM
        )
        assert result.next_expected_version == 2
        events = await store.read_stream("order-1")
        assert [e.version for e in events] == [0, 1, 2]
        assert [e.type for e in events] == ["A", "B", "C"]
        assert result.position == events[-1].position
        assert events[0].position < events[1].position < events[2].position
        assert events[0].position > 0

    async def test_recorded_events_carry_every_field(self, store: EventStore) -> None:
        new = NewEvent(
            "OrderPlaced",
            {"total": 12.5, "lines": [{"sku": "a", "qty": 2}], "note": "žluťoučký 🐎"},
            metadata={"correlation_id": "c-1", "user": "ann"},
            tags=("customer:7", "region:eu"),
        )
        await store.append("order-9", [new])
        [got] = await store.read_stream("order-9")
        assert got.id == new.id
        assert isinstance(got.id, uuid.UUID)
        assert got.stream == "order-9"
        assert got.category == "order"
        assert got.type == "OrderPlaced"
        assert got.data == new.data
        assert got.metadata == {"correlation_id": "c-1", "causation_id": str(new.id), "user": "ann"}
        assert got.tags == ("customer:7", "region:eu")
        assert got.recorded_at.tzinfo is not None
        assert got.version == 0

    async def test_a_root_event_is_its_own_cause(self, store: EventStore) -> None:
        event = ev()
        await store.append("s-1", [event])
        [got] = await store.read_stream("s-1")
        assert got.metadata == {"correlation_id": str(event.id), "causation_id": str(event.id)}
        assert got.tags == ()

    async def test_events_inherit_correlation_and_causation(self, store: EventStore) -> None:
        with caused_by("command-1", correlation_id="conversation-9"):
            await store.append("s-1", [ev(), ev(metadata={"causation_id": "explicit"})])
        first, second = await store.read_stream("s-1")
        assert first.metadata == {"correlation_id": "conversation-9", "causation_id": "command-1"}
        assert second.metadata == {"correlation_id": "conversation-9", "causation_id": "explicit"}

    async def test_exact_expected_version_is_checked(self, store: EventStore) -> None:
        await store.append("s-1", [ev(), ev()], expected_version=NO_STREAM)
        result = await store.append("s-1", [ev()], expected_version=1)
        assert result.next_expected_version == 2
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s-1", [ev()], expected_version=1)
        assert (info.value.stream, info.value.expected, info.value.actual) == ("s-1", 1, 2)
        assert len(await store.read_stream("s-1")) == 3

    async def test_no_stream_fails_when_the_stream_exists(self, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s-1", [ev()], expected_version=NO_STREAM)
        assert info.value.actual == 0

    async def test_stream_exists_fails_when_the_stream_does_not(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s-1", [ev()], expected_version=STREAM_EXISTS)
        assert info.value.actual is None
        await store.append("s-1", [ev()])
        assert (
            await store.append("s-1", [ev()], expected_version=STREAM_EXISTS)
        ).next_expected_version == 1

    async def test_exact_version_on_a_missing_stream_fails(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s-1", [ev()], expected_version=0)
        assert info.value.actual is None

    async def test_any_appends_whatever_the_version(self, store: EventStore) -> None:
        await store.append("s-1", [ev()], expected_version=ANY)
        result = await store.append("s-1", [ev()], expected_version=ANY)
        assert result.next_expected_version == 1

    async def test_concurrency_error_is_a_conflict(self, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        with pytest.raises(ConflictError):
            await store.append("s-1", [ev()], expected_version=5)

    async def test_an_empty_append_checks_and_writes_nothing(self, store: EventStore) -> None:
        await store.append("s-1", [ev(), ev()])
        head = await store.head_position()
        result = await store.append("s-1", [], expected_version=1)
        assert result.next_expected_version == 1
        assert await store.head_position() == head
        with pytest.raises(ConcurrencyError):
            await store.append("s-1", [], expected_version=0)

    async def test_reading_a_missing_stream_is_empty(self, store: EventStore) -> None:
        assert await store.read_stream("nothing-here") == []

    async def test_read_stream_from_version_and_limit(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(10)])
        assert [e.version for e in await store.read_stream("s-1", from_version=7)] == [7, 8, 9]
        assert [e.version for e in await store.read_stream("s-1", from_version=2, limit=3)] == [
            2,
            3,
            4,
        ]
        assert await store.read_stream("s-1", from_version=10) == []

    async def test_read_stream_backwards(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(5)])
        assert [e.version for e in await store.read_stream("s-1", backwards=True)] == [
            4,
            3,
            2,
            1,
            0,
        ]
        got = await store.read_stream("s-1", backwards=True, limit=2)
        assert [e.version for e in got] == [4, 3]
        got = await store.read_stream("s-1", backwards=True, from_version=2)
        assert [e.version for e in got] == [2, 1, 0]
        assert await store.read_stream("nothing", backwards=True) == []

    async def test_streams_are_independent(self, store: EventStore) -> None:
        await store.append("a-1", [ev("A")])
        await store.append("b-1", [ev("B"), ev("B")])
        assert [e.type for e in await store.read_stream("a-1")] == ["A"]
        assert [e.version for e in await store.read_stream("b-1")] == [0, 1]

    # -- the global log ---------------------------------------------------------------

    async def test_read_all_returns_the_global_order(self, store: EventStore) -> None:
        await store.append("a-1", [ev("A1")])
        await store.append("b-1", [ev("B1"), ev("B2")])
        await store.append("a-1", [ev("A2")])
        events = await store.read_all()
        assert [e.type for e in events] == ["A1", "B1", "B2", "A2"]
        positions = [e.position for e in events]
        assert positions == sorted(positions)
        assert len(set(positions)) == 4

    async def test_read_all_from_position_is_inclusive(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(5)])
        events = await store.read_all()
        third = events[2].position
        got = await store.read_all(from_position=third)
        assert [e.data["i"] for e in got] == [2, 3, 4]
        got = await store.read_all(from_position=third, limit=1)
        assert [e.data["i"] for e in got] == [2]
        assert await store.read_all(from_position=events[-1].position + 1) == []

    async def test_read_all_filters(self, store: EventStore) -> None:
        await store.append("order-1", [ev("Placed", tags=["customer:1"]), ev("Paid")])
        await store.append("invoice-1", [ev("Issued", tags=["customer:1", "big"])])
        await store.append("order-2", [ev("Placed", tags=["customer:2"])])
        assert [e.stream for e in await store.read_all(types=["Placed"])] == ["order-1", "order-2"]
        assert [e.type for e in await store.read_all(categories=["invoice"])] == ["Issued"]
        got = await store.read_all(categories=["order"], types=["Paid", "Placed"])
        assert [e.type for e in got] == ["Placed", "Paid", "Placed"]
        got = await store.read_all(categories=["invoice", "order"], types=["Placed"])
        assert [e.stream for e in got] == ["order-1", "order-2"]
        assert await store.read_all(categories=["invoice"], types=["Placed"]) == []
        got = await store.read_all(categories=["order", "invoice"])
        assert [e.type for e in got] == ["Placed", "Paid", "Issued", "Placed"]
        got = await store.read_all(types=["Placed"], from_position=got[1].position)
        assert [e.stream for e in got] == ["order-2"]
        assert [e.type for e in await store.read_all(tags=["customer:1"])] == ["Placed", "Issued"]
        assert [e.type for e in await store.read_all(tags=["customer:1", "big"])] == ["Issued"]
        assert await store.read_all(types=["Nope"]) == []
        assert len(await store.read_all(types=["Placed"], limit=1)) == 1

    async def test_head_position(self, store: EventStore) -> None:
        assert await store.head_position() == 0
        result = await store.append("s-1", [ev(), ev()])
        assert await store.head_position() == result.position

    # -- idempotent appends -----------------------------------------------------------

    async def test_a_retried_append_writes_nothing_twice(self, store: EventStore) -> None:
        events = [ev("A"), ev("B")]
        first = await store.append("s-1", events, expected_version=NO_STREAM)
        again = await store.append("s-1", events, expected_version=NO_STREAM)
        assert again == first
        assert len(await store.read_stream("s-1")) == 2
        assert len(await store.read_all()) == 2

    async def test_a_retry_after_later_appends_returns_the_first_result(
        self, store: EventStore
    ) -> None:
        events = [ev("A")]
        first = await store.append("s-1", events, expected_version=NO_STREAM)
        await store.append("s-1", [ev("B")])
        assert await store.append("s-1", events, expected_version=NO_STREAM) == first
        assert len(await store.read_stream("s-1")) == 2

    async def test_a_reused_id_with_other_content_is_refused(self, store: EventStore) -> None:
        event_id = uuid.uuid4()
        await store.append("s-1", [ev("A", {"x": 1}, id=event_id)])
        with pytest.raises(DuplicateEventError):
            await store.append("s-1", [ev("A", {"x": 2}, id=event_id)])
        with pytest.raises(DuplicateEventError):
            await store.append("s-2", [ev("A", {"x": 1}, id=event_id)])
        with pytest.raises(DuplicateEventError):
            await store.append("s-1", [ev("A", {"x": 1}, id=event_id), ev("B")])
        assert len(await store.read_all()) == 1

    async def test_event_ids_may_be_strings(self, store: EventStore) -> None:
        event_id = str(uuid.uuid4())
        await store.append("s-1", [ev(id=event_id)])
        [got] = await store.read_stream("s-1")
        assert str(got.id) == event_id

    # -- multi-stream appends ---------------------------------------------------------

    async def test_append_multi_writes_all_streams_atomically(self, store: EventStore) -> None:
        await store.append("account-1", [ev("Opened")])
        result = await store.append_multi(
            [
                StreamAppend("account-1", [ev("Debited")], expected_version=0),
                StreamAppend(
                    "account-2", [ev("Credited"), ev("Noted")], expected_version=NO_STREAM
                ),
            ]
        )
        assert result.streams["account-1"].next_expected_version == 1
        assert result.streams["account-2"].next_expected_version == 1
        assert result.position == max(r.position for r in result.streams.values())
        assert [e.type for e in await store.read_all()] == [
            "Opened",
            "Debited",
            "Credited",
            "Noted",
        ]

    async def test_append_multi_writes_nothing_when_one_check_fails(
        self, store: EventStore
    ) -> None:
        await store.append("account-1", [ev("Opened")])
        with pytest.raises(ConcurrencyError) as info:
            await store.append_multi(
                [
                    StreamAppend("account-2", [ev("Credited")], expected_version=NO_STREAM),
                    StreamAppend("account-1", [ev("Debited")], expected_version=NO_STREAM),
                ]
            )
        assert info.value.stream == "account-1"
        assert await store.read_stream("account-2") == []
        assert len(await store.read_all()) == 1

    async def test_a_stream_that_was_only_read_takes_part_in_the_check(
        self, store: EventStore
    ) -> None:
        await store.append("customer-7", [ev("Registered")])
        await store.append("customer-7", [ev("Blocked")])  # changed after the decision was made
        with pytest.raises(ConcurrencyError) as info:
            await store.append_multi(
                [
                    StreamAppend("order-1", [ev("Placed")], expected_version=NO_STREAM),
                    StreamAppend("customer-7", [], expected_version=0),
                ]
            )
        assert info.value.stream == "customer-7"
        assert await store.read_stream("order-1") == []
        result = await store.append_multi(
            [
                StreamAppend("order-1", [ev("Placed")], expected_version=NO_STREAM),
                StreamAppend("customer-7", [], expected_version=1),
            ]
        )
        assert result.streams["customer-7"].next_expected_version == 1
        assert result.streams["order-1"].next_expected_version == 0

    async def test_append_multi_rejects_bad_requests(self, store: EventStore) -> None:
        with pytest.raises(ValidationError):
            await store.append_multi([])
        with pytest.raises(ValidationError):
            await store.append_multi([StreamAppend("a-1", [ev()]), StreamAppend("a-1", [ev()])])
        event = ev()
        with pytest.raises(ValidationError):
            await store.append_multi([StreamAppend("a-1", [event]), StreamAppend("a-2", [event])])
        assert await store.read_all() == []

    async def test_append_multi_is_idempotent(self, store: EventStore) -> None:
        appends = [StreamAppend("a-1", [ev()]), StreamAppend("a-2", [ev()])]
        first = await store.append_multi(appends)
        assert await store.append_multi(appends) == first
        assert len(await store.read_all()) == 2

    async def test_a_retried_multi_append_with_a_checked_stream_is_a_retry(
        self, store: EventStore
    ) -> None:
        await store.append("customer-1", [ev("Registered")])
        appends = [
            StreamAppend("order-1", [ev()]),
            StreamAppend("customer-1", [], expected_version=0),
        ]
        first = await store.append_multi(appends)
        assert await store.append_multi(appends) == first
        assert len(await store.read_all()) == 2

    async def test_a_multi_append_mixing_stored_and_new_streams_is_refused(
        self, store: EventStore
    ) -> None:
        stored = StreamAppend("a-1", [ev()])
        await store.append_multi([stored])
        with pytest.raises(DuplicateEventError):
            await store.append_multi([stored, StreamAppend("a-2", [ev()])])
        assert len(await store.read_all()) == 1

    # -- consistency boundary conditions ----------------------------------------------

    async def test_condition_fails_on_a_matching_event_after_the_position(
        self, store: EventStore
    ) -> None:
        await store.append("course-1", [ev("Enrolled", tags=["student:1", "course:1"])])
        position = await store.head_position()
        await store.append("course-1", [ev("Enrolled", tags=["student:2", "course:1"])])
        condition = AppendCondition(types=["Enrolled"], tags=["course:1"], after=position)
        with pytest.raises(ConditionFailed) as info:
            await store.append(
                "course-1", [ev("Enrolled", tags=["student:3", "course:1"])], condition=condition
            )
        assert info.value.position is not None
        assert info.value.position > position
        assert len(await store.read_all()) == 2

    async def test_condition_passes_when_matches_are_older_or_different(
        self, store: EventStore
    ) -> None:
        await store.append("course-1", [ev("Enrolled", tags=["course:1"])])
        position = await store.head_position()
        await store.append("course-2", [ev("Enrolled", tags=["course:2"])])
        await store.append("course-1", [ev("Renamed", tags=["course:1"])])
        condition = AppendCondition(types=["Enrolled"], tags=["course:1"], after=position)
        await store.append("course-1", [ev("Enrolled", tags=["course:1"])], condition=condition)
        assert len(await store.read_all()) == 4

    async def test_condition_by_type_only_and_by_tag_only(self, store: EventStore) -> None:
        await store.append("s-1", [ev("A", tags=["t"])])
        with pytest.raises(ConditionFailed):
            await store.append("s-2", [ev()], condition=AppendCondition(types=["A"]))
        with pytest.raises(ConditionFailed):
            await store.append("s-2", [ev()], condition=AppendCondition(tags=["t"]))
        await store.append("s-2", [ev()], condition=AppendCondition(tags=["u"]))
        await store.append("s-3", [ev()], condition=AppendCondition(types=["A"], after=1 << 62))

    async def test_condition_applies_to_multi_stream_appends(self, store: EventStore) -> None:
        await store.append("s-1", [ev("A", tags=["t"])])
        with pytest.raises(ConditionFailed):
            await store.append_multi(
                [StreamAppend("s-2", [ev()]), StreamAppend("s-3", [ev()])],
                condition=AppendCondition(tags=["t"]),
            )
        assert len(await store.read_all()) == 1

    async def test_conditions_leave_no_write_skew_under_concurrency(
        self, store: EventStore
    ) -> None:
        """Ten clients decide at the same position; exactly one may claim the seat."""
        await store.append("venue-1", [ev("Opened")])
        position = await store.head_position()
        condition = AppendCondition(types=["SeatClaimed"], tags=["seat:1"], after=position)

        async def claim(i: int) -> bool:
            try:
                await store.append(
                    f"claim-{i}", [ev("SeatClaimed", tags=["seat:1"])], condition=condition
                )
            except ConditionFailed:
                return False
            return True

        outcomes = await asyncio.gather(*(claim(i) for i in range(10)))
        assert sum(outcomes) == 1
        assert len(await store.read_all(types=["SeatClaimed"])) == 1

    # -- stream lifecycle -------------------------------------------------------------

    async def test_soft_delete_hides_the_stream_and_allows_recreation(
        self, store: EventStore
    ) -> None:
        await store.append("s-1", [ev(), ev()])
        await store.append("other-1", [ev("Other")])
        await store.delete_stream("s-1")
        assert await store.read_stream("s-1") == []
        assert [e.type for e in await store.read_all()] == ["Other"]
        info = await store.stream_info("s-1")
        assert info.state is StreamState.DELETED
        result = await store.append("s-1", [ev("Again")], expected_version=NO_STREAM)
        assert result.next_expected_version == 2
        assert [(e.version, e.type) for e in await store.read_stream("s-1")] == [(2, "Again")]
        assert (await store.stream_info("s-1")).state is StreamState.ACTIVE

    async def test_hard_delete_tombstones_the_stream(self, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        await store.delete_stream("s-1", hard=True)
        with pytest.raises(StreamDeleted):
            await store.append("s-1", [ev()])
        with pytest.raises(StreamDeleted):
            await store.append("s-1", [ev()], expected_version=NO_STREAM)
        with pytest.raises(StreamDeleted):
            await store.read_stream("s-1")
        with pytest.raises(StreamDeleted):
            await store.truncate_stream("s-1", 1)
        with pytest.raises(StreamDeleted):
            await store.delete_stream("s-1")
        assert (await store.stream_info("s-1")).state is StreamState.TOMBSTONED
        assert await store.read_all() == []

    async def test_a_tombstoned_stream_fails_inside_multi_appends(self, store: EventStore) -> None:
        await store.delete_stream("gone-1", hard=True)
        with pytest.raises(StreamDeleted):
            await store.append_multi([StreamAppend("s-1", [ev()]), StreamAppend("gone-1", [])])
        assert await store.read_all() == []

    async def test_soft_deleting_an_unknown_stream_is_not_found(self, store: EventStore) -> None:
        with pytest.raises(StreamNotFound):
            await store.delete_stream("nothing-1")

    async def test_stream_info(self, store: EventStore) -> None:
        with pytest.raises(StreamNotFound):
            await store.stream_info("nothing-1")
        await store.append("s-1", [ev(), ev(), ev()])
        info = await store.stream_info("s-1")
        assert (info.stream, info.version, info.state, info.truncated_before) == (
            "s-1",
            2,
            StreamState.ACTIVE,
            0,
        )

    async def test_truncate_removes_older_events(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(5)])
        await store.truncate_stream("s-1", 3)
        assert [e.version for e in await store.read_stream("s-1")] == [3, 4]
        assert [e.data["i"] for e in await store.read_all()] == [3, 4]
        assert (await store.stream_info("s-1")).truncated_before == 3
        result = await store.append("s-1", [ev()], expected_version=4)
        assert result.next_expected_version == 5
        with pytest.raises(StreamNotFound):
            await store.truncate_stream("nothing-1", 1)

    async def test_max_count_is_enforced_on_read(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(5)])
        info = await store.set_stream_metadata("s-1", max_count=2)
        assert info.max_count == 2
        assert [e.version for e in await store.read_stream("s-1")] == [3, 4]
        assert [e.version for e in await store.read_stream("s-1", backwards=True)] == [4, 3]
        await store.set_stream_metadata("s-1")
        assert len(await store.read_stream("s-1")) == 5

    async def test_max_age_is_enforced_on_read(self, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        await store.set_stream_metadata("s-1", max_age=0.2)
        assert len(await store.read_stream("s-1")) == 1
        await asyncio.sleep(0.3)
        assert await store.read_stream("s-1") == []
        await store.append("s-1", [ev()])
        assert [e.version for e in await store.read_stream("s-1")] == [1]

    async def test_stream_metadata_round_trips(self, store: EventStore) -> None:
        info = await store.set_stream_metadata("s-1", metadata={"owner": "team-a"}, max_age=3600)
        assert info.metadata == {"owner": "team-a"}
        assert info.max_age == 3600
        assert info.version is None
        again = await store.stream_info("s-1")
        assert again.metadata == {"owner": "team-a"}
        assert again.max_age == 3600
        result = await store.append("s-1", [ev()], expected_version=NO_STREAM)
        assert result.next_expected_version == 0

    # -- listing streams ----------------------------------------------------------------

    async def test_list_streams_in_name_order_with_their_state(self, store: EventStore) -> None:
        for name in ("b-1", "a-2", "a-1", "c"):
            await store.append(name, [ev(), ev()])
        await store.delete_stream("b-1")
        await store.delete_stream("gone-1", hard=True)
        await store.set_stream_metadata("quiet-1", metadata={"owner": "ops"})
        found = await store.list_streams()
        assert [i.stream for i in found] == ["a-1", "a-2", "b-1", "c", "gone-1", "quiet-1"]
        by_name = {i.stream: i for i in found}
        assert (by_name["a-1"].version, by_name["a-1"].state) == (1, StreamState.ACTIVE)
        assert by_name["b-1"].state is StreamState.DELETED
        assert by_name["gone-1"].state is StreamState.TOMBSTONED
        assert (by_name["quiet-1"].version, by_name["quiet-1"].metadata) == (None, {"owner": "ops"})
        assert by_name["c"] == await store.stream_info("c")

    async def test_list_streams_pages_with_a_cursor_and_filters(self, store: EventStore) -> None:
        names = ["order", "order x", "order-1", "order-10", "order-2", "order/3", "orders-1"]
        names += ["payment-1", "zz\U0001f600-1", "\u00e9t\u00e9-1"]
        for name in reversed(names):
            await store.append(name, [ev()])
        pages: list[list[str]] = []
        after: str | None = None
        while not pages or len(pages[-1]) == 3:
            page = await store.list_streams(after=after, limit=3)
            pages.append([i.stream for i in page])
            after = page[-1].stream if page else None
        assert [name for page in pages for name in page] == sorted(names)

        async def listed(**filters: Any) -> list[str]:
            return [i.stream for i in await store.list_streams(**filters)]

        assert await listed(category="order") == ["order", "order-1", "order-10", "order-2"]
        assert await listed(prefix="order-") == ["order-1", "order-10", "order-2"]
        assert await listed(prefix="order", category="orders") == ["orders-1"]
        assert await listed(category="order", after="order-1", limit=2) == ["order-10", "order-2"]
        assert await listed(prefix="p", category="order") == []
        assert await listed(prefix="\u00e9") == ["\u00e9t\u00e9-1"]

    # -- namespaces -------------------------------------------------------------------

    async def test_namespaces_are_isolated(
        self, store: EventStore, another: Callable[..., AbstractAsyncContextManager[EventStore]]
    ) -> None:
        shared = ev("Shared")
        await store.append("s-1", [shared, ev("A")])
        async with another(namespace="tenant-b") as other:
            assert other.namespace == "tenant-b"
            assert await other.read_stream("s-1") == []
            assert await other.read_all() == []
            assert await other.head_position() == 0
            result = await other.append("s-1", [shared], expected_version=NO_STREAM)
            assert result.next_expected_version == 0
            assert [e.type for e in await other.read_all()] == ["Shared"]
            assert [i.stream for i in await other.list_streams()] == ["s-1"]
            with pytest.raises(StreamNotFound):
                await other.delete_stream("missing-in-b")
        assert len(await store.read_all()) == 2
        assert len(await store.read_stream("s-1")) == 2
        assert [i.version for i in await store.list_streams()] == [1]

    # -- subscriptions ----------------------------------------------------------------

    async def test_subscribe_catches_up_then_stays_live(self, store: EventStore) -> None:
        await store.append("s-1", [ev(data={"i": i}) for i in range(3)])
        task = asyncio.create_task(collect(store, 5))
        await asyncio.sleep(0.05)
        await store.append("s-2", [ev(data={"i": 3})])
        await store.append("s-1", [ev(data={"i": 4})])
        got = await task
        assert [e.data["i"] for e in got] == [0, 1, 2, 3, 4]

    async def test_subscribe_from_position_and_filters(self, store: EventStore) -> None:
        await store.append("order-1", [ev("Placed"), ev("Paid")])
        await store.append("invoice-1", [ev("Issued")])
        events = await store.read_all()
        got = await collect(store, 2, from_position=events[1].position)
        assert [e.type for e in got] == ["Paid", "Issued"]
        task = asyncio.create_task(collect(store, 3, categories=["order"]))
        await asyncio.sleep(0.05)
        await store.append("invoice-2", [ev("Issued")])
        await store.append("order-2", [ev("Placed")])
        assert [e.stream for e in await task] == ["order-1", "order-1", "order-2"]
        got = await collect(store, 1, types=["Issued"], from_position=events[-1].position + 1)
        assert got[0].stream == "invoice-2"

    async def test_subscribe_sees_writes_of_another_store_object(
        self, store: EventStore, another: Callable[..., AbstractAsyncContextManager[EventStore]]
    ) -> None:
        async with another() as writer:
            task = asyncio.create_task(collect(store, 3, timeout=20))
            await asyncio.sleep(0.05)
            for i in range(3):
                await writer.append("s-1", [ev(data={"i": i})])
            got = await task
        assert [e.data["i"] for e in got] == [0, 1, 2]

    async def test_a_subscription_ends_when_the_store_closes(self, store_url: str) -> None:
        async with open_store(store_url) as store:
            await store.append("s-1", [ev()])
            seen: list[RecordedEvent] = []

            async def run() -> None:
                seen.extend([event async for event in store.subscribe()])

            task = asyncio.create_task(run())
            await asyncio.sleep(0.1)
        await asyncio.wait_for(task, 10)
        assert len(seen) == 1

    # -- bad input and lifecycle ------------------------------------------------------

    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (lambda s: s.append("", [ev()]), "stream"),
            (lambda s: s.append("x" * 300, [ev()]), "stream"),
            (lambda s: s.append("bad\nname", [ev()]), "stream"),
            (lambda s: s.append(42, [ev()]), "stream"),
            (lambda s: s.append("s-1", [ev(data={"when": object()})]), "events[0].data"),
            (lambda s: s.append("s-1", [ev(), ev(metadata={"x": {1, 2}})]), "events[1].metadata"),
            (lambda s: s.append("s-1", [{"type": "A"}]), "events[0]"),
            (lambda s: s.append("s-1", "nope"), "events"),
            (lambda s: s.append("s-1", [ev()], expected_version=-1), "expected_version"),
            (lambda s: s.append("s-1", [ev()], expected_version="latest"), "expected_version"),
            (lambda s: s.append("s-1", [ev()], expected_version=True), "expected_version"),
            (lambda s: s.append("s-1", [ev()], condition="x"), "condition"),
            (lambda s: s.read_all(from_position=-1), "from_position"),
            (lambda s: s.read_all(limit=0), "limit"),
            (lambda s: s.read_all(types="Placed"), "types"),
            (lambda s: s.read_stream("s-1", from_version=-2), "from_version"),
            (lambda s: s.truncate_stream("s-1", -1), "before_version"),
            (lambda s: s.set_stream_metadata("s-1", max_age=-5), "max_age"),
            (lambda s: s.set_stream_metadata("s-1", max_count=0), "max_count"),
            (lambda s: s.set_stream_metadata("s-1", metadata=[1]), "metadata"),
            (lambda s: s.list_streams(category="order-1"), "category"),
            (lambda s: s.list_streams(after="", limit=0), "after"),
        ],
    )
    async def test_bad_input_is_rejected_naming_the_field(
        self, store: EventStore, call: Callable[[EventStore], Any], field: str
    ) -> None:
        with pytest.raises(ValidationError) as info:
            await call(store)
        assert any(f == field for f, _ in info.value.errors), info.value.errors
        assert await store.head_position() == 0

    async def test_a_closed_store_refuses_calls(self, store_url: str) -> None:
        store = open_store(store_url)
        with pytest.raises(StoreClosed):
            await store.append("s-1", [ev()])
        async with store:
            await store.append("s-1", [ev()])
        with pytest.raises(StoreClosed):
            await store.read_stream("s-1")

    # -- the concurrency proof: no loss, no duplicate, no skip ------------------------

    async def test_concurrent_writers_and_a_live_reader_lose_and_skip_nothing(
        self, store: EventStore, another: Callable[..., AbstractAsyncContextManager[EventStore]]
    ) -> None:
        writers, total = self.concurrency_writers, self.concurrency_events
        per_writer = total // writers
        acknowledged: list[uuid.UUID] = []

        async def writer(w: int) -> None:
            rng = random.Random(w)  # noqa: S311 - a reproducible mix of streams, not crypto
            own, version = f"own-{w}", -1
            for i in range(per_writer):
                event = ev("Written", {"w": w, "i": i})
                if rng.random() < 0.5:
                    await store.append(f"shared-{rng.randrange(4)}", [event])
                else:
                    expected = NO_STREAM if version < 0 else version
                    version = (
                        await store.append(own, [event], expected_version=expected)
                    ).next_expected_version
                acknowledged.append(event.event_id)

        async with another() as reader_store:
            reader = asyncio.create_task(collect(reader_store, writers * per_writer, timeout=600))
            await asyncio.gather(*(writer(w) for w in range(writers)))
            live = await reader

        expected_ids = set(acknowledged)
        seen_ids = [e.id for e in live]
        assert len(seen_ids) == len(set(seen_ids)), "the live reader saw an event twice"
        assert set(seen_ids) == expected_ids, "the live reader missed events"
        positions = [e.position for e in live]
        assert positions == sorted(positions), "the live reader saw positions out of order"
        stored = await store.read_all()
        assert [e.id for e in stored] == seen_ids, "global log order differs from live order"
        streams: dict[str, list[int]] = {}
        for event in stored:
            streams.setdefault(event.stream, []).append(event.version)
        for name, versions in streams.items():
            assert versions == list(range(len(versions))), f"versions of {name} are not gap-free"


@pytest.mark.asyncio
class SnapshotContract:
    """Snapshot storage (``write_snapshot`` / ``read_snapshot``). Give it ``store_url`` too."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override: the URL of a fresh, empty store."""
        raise NotImplementedError("subclasses of SnapshotContract must define store_url")

    @pytest_asyncio.fixture
    async def store(self, store_url: str) -> AsyncIterator[EventStore]:
        """An open store on ``store_url``."""
        async with open_store(store_url) as store:
            yield store

    async def test_the_latest_snapshot_replaces_older_ones(self, store: EventStore) -> None:
        await store.append("s-1", [ev() for _ in range(5)])
        assert await store.read_snapshot("s-1") is None
        await store.write_snapshot("s-1", 2, {"total": 3, "when": "now"}, schema_version=4)
        await store.write_snapshot("s-1", 4, {"total": 5})
        snapshot = await store.read_snapshot("s-1")
        assert snapshot is not None
        assert (snapshot.stream, snapshot.version, snapshot.schema_version) == ("s-1", 4, 1)
        assert snapshot.state == {"total": 5}

    async def test_snapshots_survive_truncation_but_not_deletion(self, store: EventStore) -> None:
        await store.append("s-1", [ev() for _ in range(3)])
        await store.write_snapshot("s-1", 2, {"n": 3})
        await store.truncate_stream("s-1", 3)
        assert await store.read_snapshot("s-1") is not None
        await store.delete_stream("s-1")
        assert await store.read_snapshot("s-1") is None
        await store.append("s-2", [ev()])
        await store.write_snapshot("s-2", 0, {"n": 1})
        await store.delete_stream("s-2", hard=True)
        assert await store.read_snapshot("s-2") is None

    async def test_snapshots_are_per_namespace(self, store_url: str, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        await store.write_snapshot("s-1", 0, {"n": 1})
        async with open_store(store_url, namespace="other") as other:
            assert await other.read_snapshot("s-1") is None

    async def test_bad_snapshots_are_refused(self, store: EventStore) -> None:
        await store.append("s-1", [ev()])
        with pytest.raises(ValidationError):
            await store.write_snapshot("s-1", -1, {})
        with pytest.raises(ValidationError):
            await store.write_snapshot("s-1", 0, {"x": object()})
        with pytest.raises(StreamNotFound):
            await store.write_snapshot("nothing-1", 0, {})
        await store.delete_stream("s-1", hard=True)
        with pytest.raises(StreamDeleted):
            await store.write_snapshot("s-1", 0, {})
