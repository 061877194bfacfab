"""The write side on the memory store: aggregates, registry, repository, snapshots, commands."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

import kronika
from kronika import (
    Aggregate,
    AggregateNotFound,
    CommandBus,
    ConcurrencyError,
    ConfigurationError,
    Decider,
    DomainError,
    Event,
    EventRegistry,
    NewEvent,
    Repository,
    RetriesExhausted,
    RetryPolicy,
    Session,
    UnreadableEvent,
    ValidationError,
    apply,
)
from kronika.cqrs.checks import stored_event_types, unreadable_event_types
from kronika.store.protocol import EventStore
from kronika.testing.given import CommandScenario, given

registry = EventRegistry()


@registry.event("Opened")
class Opened(Event):
    owner: str


@registry.event("Added", version=3)
class Added(Event):
    amount: int = Field(gt=0)
    note: str


@registry.upcaster("Added", from_version=1)
def _v1(data: dict[str, Any]) -> dict[str, Any]:
    return {"amount": data["value"]}


@registry.upcaster("Added", from_version=2)
def _v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "note": "migrated"}


@registry.event("Tagged")
@dataclasses.dataclass(frozen=True)
class Tagged:
    label: str


class Overdrawn(DomainError):
    pass


class Counter(Aggregate):
    snapshot_every = 10
    owner: str = ""
    total: int = 0

    def add(self, amount: int, note: str = "") -> None:
        if self.total + amount > 1_000_000:
            raise Overdrawn("too much")
        self.record(Added(amount=amount, note=note))

    @apply
    def _opened(self, event: Opened) -> None:
        self.owner = event.owner

    @apply(Added)
    def _added(self, event: Added) -> None:
        self.total += event.amount


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with kronika.open_store("memory://") as opened:
        yield opened


@pytest.fixture
def repository(store: EventStore) -> Repository:
    return Repository(store, registry=registry)


async def new_counter(repository: Repository, name: str = "c1", adds: int = 0) -> Counter:
    counter = Counter(name)
    counter.record(Opened(owner="ann"))
    for i in range(adds):
        counter.add(1, note=str(i))
    await repository.save(counter)
    return counter


# -- aggregates ---------------------------------------------------------------------------


def test_aggregate_streams_and_versions() -> None:
    counter = Counter("7")
    assert (counter.stream, counter.version, counter.category) == ("counter-7", -1, "counter")
    counter.record(Opened(owner="ann"))
    assert counter.owner == "ann"
    assert counter.pending_events == (Opened(owner="ann"),)


def test_an_apply_method_needs_an_annotated_event() -> None:
    with pytest.raises(ConfigurationError, match="one annotated event parameter"):

        class Broken(Aggregate):
            @apply
            def _x(self, event) -> None:  # type: ignore[no-untyped-def]
                pass


def test_categories_must_not_contain_a_dash() -> None:
    with pytest.raises(ConfigurationError):

        class Bad(Aggregate):
            category = "a-b"


def test_given_when_then_for_aggregates() -> None:
    given(Counter, "1", Opened(owner="ann")).when(lambda c: c.add(5, "x")).then(
        Added(amount=5, note="x")
    )
    given(Counter, "1", Added(amount=999_999, note="")).when(lambda c: c.add(5)).then_raises(
        Overdrawn
    )
    given(Counter, "1", Opened(owner="bo")).when(lambda c: None).then().then_state(
        lambda c: c.owner == "bo"
    )
    with pytest.raises(AssertionError):
        given(Counter, "1").when(lambda c: c.add(5)).then(Added(amount=6, note=""))


# -- the registry -------------------------------------------------------------------------


def test_events_serialise_with_their_type_version() -> None:
    new = registry.to_new_event(Added(amount=3, note="n"))
    assert (new.type, new.data, new.metadata) == (
        "Added",
        {"amount": 3, "note": "n"},
        {"event_version": 3},
    )
    assert registry.to_new_event(Tagged("x")).data == {"label": "x"}


def test_an_invalid_event_is_refused_with_field_errors() -> None:
    bad = Tagged.__new__(Tagged)
    object.__setattr__(bad, "label", 12)
    with pytest.raises(ValidationError) as info:
        registry.to_new_event(bad)
    assert [f for f, _ in info.value.errors] == ["event.data.label"]
    invalid = Added.model_construct(amount=-1, note="x")
    with pytest.raises(ValidationError, match="amount"):
        registry.to_new_event(invalid)


def test_unregistered_classes_and_duplicate_names_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="not a registered event class"):
        registry.to_new_event(object())

    class Other(Event):
        pass

    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(Other, "Opened")


def recorded(type_: str, data: dict[str, Any], version: int | None = None) -> kronika.RecordedEvent:
    from datetime import UTC, datetime

    metadata = {} if version is None else {"event_version": version}
    return kronika.RecordedEvent(
        id=uuid.uuid4(),
        stream="s-1",
        version=0,
        position=1,
        type=type_,
        data=data,
        metadata=metadata,
        tags=(),
        recorded_at=datetime.now(UTC),
    )


def test_old_versions_are_upcast_step_by_step() -> None:
    assert registry.from_recorded(recorded("Added", {"value": 4}, 1)) == Added(
        amount=4, note="migrated"
    )
    assert registry.from_recorded(recorded("Added", {"amount": 4}, 2)) == Added(
        amount=4, note="migrated"
    )
    assert registry.from_recorded(recorded("Added", {"amount": 4, "note": "n"}, 3)) == Added(
        amount=4, note="n"
    )


@pytest.mark.parametrize(
    ("type_", "version", "reason"),
    [
        ("Vanished", 1, "no class is registered"),
        ("Added", 4, "newer than the registered version 3"),
        ("Opened", 0, "no upcaster from version 0"),
    ],
)
def test_unreadable_events_name_type_and_version(type_: str, version: int, reason: str) -> None:
    with pytest.raises(UnreadableEvent) as info:
        registry.from_recorded(recorded(type_, {}, version))
    assert (info.value.event_type, info.value.version) == (type_, version)
    assert reason in str(info.value)
    assert repr(type_) in str(info.value)


def test_stored_data_that_no_longer_validates_is_unreadable() -> None:
    with pytest.raises(UnreadableEvent, match="amount"):
        registry.from_recorded(recorded("Added", {"amount": -5, "note": ""}, 3))


async def test_the_store_check_lists_types_without_an_upcast_path(store: EventStore) -> None:
    await store.append("s-1", [NewEvent("Added", {"value": 1}, {"event_version": 1})])
    await store.append("s-1", [NewEvent("Vanished", {})])
    await store.append("s-1", [NewEvent("Added", {"amount": 1}, {"event_version": 5})])
    assert await stored_event_types(store) == {("Added", 1): 1, ("Vanished", 1): 1, ("Added", 5): 1}
    missing = await unreadable_event_types(store, registry)
    assert [(m.type, m.version) for m in missing] == [("Added", 5), ("Vanished", 1)]
    missing = await unreadable_event_types(store, registry, ignore_unregistered=True)
    assert [(m.type, m.version) for m in missing] == [("Added", 5)]


# -- the repository -----------------------------------------------------------------------


async def test_save_passes_the_loaded_version(repository: Repository) -> None:
    await new_counter(repository)
    first = await repository.get(Counter, "c1")
    second = await repository.get(Counter, "c1")
    first.add(1)
    await repository.save(first)
    assert first.version == 1 and first.pending_events == ()
    second.add(2)
    with pytest.raises(ConcurrencyError) as info:
        await repository.save(second)
    assert (info.value.expected, info.value.actual) == (0, 1)


async def test_a_new_aggregate_cannot_overwrite_an_existing_stream(repository: Repository) -> None:
    await new_counter(repository)
    with pytest.raises(ConcurrencyError):
        await new_counter(repository)


async def test_get_and_find_missing_aggregates(repository: Repository) -> None:
    with pytest.raises(AggregateNotFound, match="Counter 'nope'"):
        await repository.get(Counter, "nope")
    assert await repository.find(Counter, "nope") is None


async def test_unknown_types_fail_a_load_unless_skipping_was_chosen(store: EventStore) -> None:
    await store.append("counter-x", [NewEvent("Opened", {"owner": "a"}), NewEvent("Legacy", {})])
    with pytest.raises(UnreadableEvent, match="'Legacy'"):
        await Repository(store, registry=registry).get(Counter, "x")
    counter = await Repository(store, registry=registry, skip_unknown=True).get(Counter, "x")
    assert (counter.owner, counter.version) == ("a", 1)


async def test_a_session_saves_several_aggregates_atomically(
    repository: Repository, store: EventStore
) -> None:
    await new_counter(repository, "a")
    await new_counter(repository, "b")
    async with repository.session() as session:
        a = await session.get(Counter, "a")
        b = await session.get(Counter, "b")
        a.add(1)
        b.add(2)
    assert [e.stream for e in (await store.read_all())[-2:]] == ["counter-a", "counter-b"]
    assert (await repository.get(Counter, "b")).total == 2


async def test_aggregates_only_read_still_take_part_in_the_check(repository: Repository) -> None:
    await new_counter(repository, "a")
    await new_counter(repository, "limit")
    session = repository.session()
    a = await session.get(Counter, "a")
    limit = await session.get(Counter, "limit")
    a.add(limit.total + 1)
    concurrent = await repository.get(Counter, "limit")
    concurrent.add(100)
    await repository.save(concurrent)
    with pytest.raises(ConcurrencyError) as info:
        await session.commit()
    assert info.value.stream == "counter-limit"
    assert (await repository.get(Counter, "a")).total == 0


async def test_a_session_remembers_aggregates_it_found_missing(repository: Repository) -> None:
    session = repository.session()
    assert await session.find(Counter, "new") is None
    session.add(Counter("x"))
    assert await session.commit() is None
    await new_counter(repository, "new")  # created by someone else meanwhile
    created = Counter("mine")
    created.record(Opened(owner="z"))
    session.add(created)
    with pytest.raises(ConcurrencyError):
        await session.commit()


# -- snapshots ----------------------------------------------------------------------------


class CountingStore:
    """Wraps a store to count how many events loads read."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def read_stream(self, stream: str, **kwargs: Any) -> list[kronika.RecordedEvent]:
        events = await self._store.read_stream(stream, **kwargs)
        self.read += len(events)
        return events


async def test_loads_start_from_the_latest_snapshot(store: EventStore) -> None:
    counting = CountingStore(store)
    repository = Repository(counting, registry=registry)  # type: ignore[arg-type]
    counter = await new_counter(repository, "s", adds=18)  # versions 0..18: crosses 9
    snapshot = await store.read_snapshot("counter-s")
    assert snapshot is not None and snapshot.version == 18
    assert snapshot.state == {"owner": "ann", "total": 18}
    counter.add(1)
    await repository.save(counter)  # version 19: crosses 19, a new snapshot
    counter.add(1)
    await repository.save(counter)  # version 20: no snapshot
    snapshot = await store.read_snapshot("counter-s")
    assert snapshot is not None and snapshot.version == 19
    counting.read = 0
    counter = await repository.get(Counter, "s")
    assert (counter.total, counter.version, counting.read) == (20, 20, 1)


async def test_a_snapshot_of_another_schema_version_is_ignored_and_rebuilt(
    store: EventStore,
) -> None:
    repository = Repository(store, registry=registry)
    await new_counter(repository, "s", adds=12)
    await store.write_snapshot("counter-s", 12, {"old": "shape"}, schema_version=99)
    counter = await repository.get(Counter, "s")
    assert counter.total == 12
    snapshot = await store.read_snapshot("counter-s")
    assert snapshot is not None and (snapshot.schema_version, snapshot.version) == (1, 12)


async def test_snapshot_policy_can_be_set_per_repository(store: EventStore) -> None:
    repository = Repository(store, registry=registry, snapshot_every={Counter: None})
    await new_counter(repository, "s", adds=30)
    assert await store.read_snapshot("counter-s") is None


# -- commands -----------------------------------------------------------------------------


class AddTo(BaseModel):
    counter: str
    amount: int = Field(gt=0)


def make_bus(repository: Repository, retry: RetryPolicy | None = None) -> CommandBus:
    bus = CommandBus(repository, retry=retry or RetryPolicy(initial_delay=0.001))

    @bus.handler(AddTo)
    async def add(command: AddTo, session: Session) -> int:
        counter = await session.get(Counter, command.counter)
        counter.add(command.amount)
        return counter.total

    return bus


async def test_commands_are_validated_before_anything_is_loaded(repository: Repository) -> None:
    bus = make_bus(repository)
    with pytest.raises(ValidationError) as info:
        await bus.dispatch(AddTo, {"counter": "c1", "amount": 0})
    assert [f for f, _ in info.value.errors] == ["amount"]
    with pytest.raises(ValidationError):
        await bus.dispatch(AddTo.model_construct(counter="c1", amount=-1))
    with pytest.raises(ConfigurationError, match="no handler"):
        await bus.dispatch(Opened(owner="x"))


async def test_a_command_appends_events_caused_by_it(
    repository: Repository, store: EventStore
) -> None:
    await new_counter(repository)
    bus = make_bus(repository)
    with kronika.caused_by("request-1", correlation_id="conversation-1"):
        assert await bus.dispatch(AddTo(counter="c1", amount=5)) == 5
    event = (await store.read_stream("counter-c1"))[-1]
    assert event.metadata["correlation_id"] == "conversation-1"
    assert event.metadata["causation_id"] not in ("request-1", str(event.id))


async def test_conflicts_are_retried_with_a_fresh_load(repository: Repository) -> None:
    await new_counter(repository)
    bus = CommandBus(repository, retry=RetryPolicy(initial_delay=0.001))
    calls = 0

    @bus.handler(AddTo)
    async def add(command: AddTo, session: Session) -> None:
        nonlocal calls
        calls += 1
        counter = await session.get(Counter, command.counter)
        if calls == 1:  # a concurrent writer gets in between
            rival = await repository.get(Counter, command.counter)
            rival.add(100)
            await repository.save(rival)
        counter.add(command.amount)

    await bus.dispatch(AddTo(counter="c1", amount=1))
    assert calls == 2
    assert (await repository.get(Counter, "c1")).total == 101


async def test_retries_end_with_a_distinct_error(repository: Repository) -> None:
    await new_counter(repository)
    bus = CommandBus(repository, retry=RetryPolicy(max_attempts=3, initial_delay=0.001))

    @bus.handler(AddTo)
    async def always_conflicts(command: AddTo, session: Session) -> None:
        counter = await session.get(Counter, command.counter)
        rival = await repository.get(Counter, command.counter)
        rival.add(1)
        await repository.save(rival)
        counter.add(command.amount)

    with pytest.raises(RetriesExhausted) as info:
        await bus.dispatch(AddTo(counter="c1", amount=1))
    assert info.value.attempts == 3
    assert isinstance(info.value.last, ConcurrencyError)


async def test_domain_errors_are_never_retried(repository: Repository) -> None:
    await new_counter(repository)
    bus = make_bus(repository)
    with pytest.raises(Overdrawn):
        await bus.dispatch(AddTo(counter="c1", amount=2_000_000))


async def test_concurrent_commands_all_land(repository: Repository) -> None:
    await new_counter(repository)
    bus = make_bus(repository, RetryPolicy(max_attempts=50, initial_delay=0.0005, max_delay=0.005))
    await asyncio.gather(*(bus.dispatch(AddTo(counter="c1", amount=1)) for _ in range(20)))
    assert (await repository.get(Counter, "c1")).total == 20


async def test_command_scenarios(repository: Repository) -> None:
    scenario = CommandScenario(make_bus, registry=registry)
    await scenario.given(Counter, "c1", Opened(owner="ann"))
    await scenario.when(AddTo(counter="c1", amount=3))
    await scenario.then(Counter, "c1", Added(amount=3, note=""))
    await scenario.when(AddTo(counter="missing", amount=3))
    await scenario.then_raises(AggregateNotFound)


# -- deciders -----------------------------------------------------------------------------


class Reserve(BaseModel):
    seat: str


@registry.event("Reserved")
class Reserved(Event):
    seat: str


def decide(command: Reserve, taken: bool) -> list[Reserved]:
    if taken:
        raise DomainError(f"seat {command.seat} is taken")
    return [Reserved(seat=command.seat)]


seats: Decider[Reserve, bool, Reserved] = Decider(
    category="seat", initial=lambda: False, evolve=lambda state, event: True, decide=decide
)


async def test_deciders_handle_commands(repository: Repository, store: EventStore) -> None:
    bus = CommandBus(repository)
    bus.decider(Reserve, seats, entity_id=lambda c: c.seat)
    assert await bus.dispatch(Reserve(seat="1A")) == [Reserved(seat="1A")]
    with pytest.raises(DomainError, match="taken"):
        await bus.dispatch(Reserve(seat="1A"))
    assert [e.type for e in await store.read_stream("seat-1A")] == ["Reserved"]


def test_the_write_side_from_synchronous_code() -> None:
    import kronika.sync

    with kronika.sync.open_store("memory://") as store:
        repository = kronika.sync.Repository(store, registry=registry)
        counter = Counter("sync")
        counter.record(Opened(owner="s"))
        repository.save(counter)
        loaded = repository.get(Counter, "sync")
        assert (loaded.owner, loaded.version) == ("s", 0)
        assert repository.find(Counter, "missing") is None
        bus = kronika.sync.CommandBus(make_bus(repository.async_repository), store)
        assert bus.dispatch(AddTo(counter="sync", amount=4)) == 4
        with pytest.raises(ValidationError):
            bus.dispatch(AddTo, {"counter": "sync", "amount": -1})
