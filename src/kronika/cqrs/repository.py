"""Loading and saving aggregates, with snapshots and one atomic save for several of them.

repository = Repository(store)
account = await repository.get(Account, "42")
account.deposit(10)
await repository.save(account)          # expected version = the loaded version

async with repository.session() as session:   # one atomic multi-stream append on exit
    order = await session.get(Order, "1")
    customer = await session.get(Customer, "7")  # only read: still takes part in the check
    order.place(customer)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self, TypeVar

from kronika.cqrs.registry import EventRegistry, default_registry
from kronika.cqrs.snapshots import restore_state, snapshot_state
from kronika.domain.aggregate import Aggregate
from kronika.domain.decider import Decider
from kronika.domain.events import (
    NO_STREAM,
    ExpectedVersionLike,
    MultiAppendResult,
    NewEvent,
    StreamAppend,
)
from kronika.errors import AggregateNotFound, KronikaError, UnreadableEvent
from kronika.observability import metrics
from kronika.store.protocol import EventStore

__all__ = ["Repository", "Session"]

A = TypeVar("A", bound=Aggregate)
C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")
log = logging.getLogger("kronika.cqrs")


def _expected(aggregate: Aggregate) -> ExpectedVersionLike:
    return NO_STREAM if aggregate.version < 0 else aggregate.version


class Repository:
    """Loads aggregates from a store and saves their new events.

    ``snapshot_every`` overrides an aggregate class's own ``snapshot_every``; with
    ``skip_unknown=True`` events of unregistered types are skipped instead of failing a load.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        registry: EventRegistry = default_registry,
        snapshot_every: Mapping[type[Aggregate], int | None] | None = None,
        skip_unknown: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self._snapshot_every = dict(snapshot_every or {})
        self._skip_unknown = skip_unknown

    # -- loading ----------------------------------------------------------------------

    async def find(self, cls: type[A], aggregate_id: str) -> A | None:
        """The aggregate with its events applied, or ``None`` if it has none."""
        aggregate = cls(aggregate_id)
        start = await self._restore_snapshot(aggregate)
        events = await self.store.read_stream(aggregate.stream, from_version=start)
        for recorded in events:
            try:
                aggregate.apply_event(self.registry.from_recorded(recorded))
            except UnreadableEvent:
                if not self._skip_unknown:
                    raise
            aggregate.version = recorded.version
        if aggregate.version < 0:
            return None
        metrics.aggregate_loaded(cls.__name__, from_snapshot=start > 0)
        if events and self._due(cls, start - 1, aggregate.version):
            await self._write_snapshot(aggregate)
        return aggregate

    async def get(self, cls: type[A], aggregate_id: str) -> A:
        """The aggregate with its events applied; ``AggregateNotFound`` if it has none."""
        aggregate = await self.find(cls, aggregate_id)
        if aggregate is None:
            raise AggregateNotFound(cls.__name__, aggregate_id)
        return aggregate

    async def _restore_snapshot(self, aggregate: Aggregate) -> int:
        """Apply the stream's snapshot if usable; return the first version still to read."""
        if self.snapshot_interval(type(aggregate)) is None:
            return 0
        snapshot = await self.store.read_snapshot(aggregate.stream)
        if snapshot is None or snapshot.schema_version != aggregate.snapshot_version:
            return 0
        try:
            restore_state(aggregate, snapshot.state)
        except KronikaError as exc:
            log.warning("ignoring the snapshot of %s: %s", aggregate.stream, exc.message)
            return 0
        aggregate.version = snapshot.version
        return snapshot.version + 1

    # -- saving -----------------------------------------------------------------------

    async def save(
        self, *aggregates: Aggregate, read: Sequence[Aggregate] = ()
    ) -> MultiAppendResult:
        """Append the pending events of ``aggregates`` in one atomic append.

        Each stream's expected version is its loaded version. Aggregates in ``read`` were only
        read to make the decision: their streams must still be at their loaded versions.
        """
        return await self._save(aggregates, read, {})

    async def _save(
        self,
        aggregates: Sequence[Aggregate],
        read: Sequence[Aggregate],
        staged: Mapping[str, tuple[list[object], ExpectedVersionLike]],
    ) -> MultiAppendResult:
        appends = [
            StreamAppend(a.stream, self._encode(a.stream, a.pending_events), _expected(a))
            for a in (*aggregates, *read)
        ]
        appends += [
            StreamAppend(name, self._encode(name, events), expected)
            for name, (events, expected) in staged.items()
        ]
        result = await self.store.append_multi(appends)
        for aggregate in aggregates:
            old = aggregate.version
            aggregate.mark_saved(result.streams[aggregate.stream].next_expected_version)
            if self._due(type(aggregate), old, aggregate.version):
                await self._write_snapshot(aggregate)
        return result

    def _encode(self, stream: str, events: Sequence[object]) -> list[NewEvent]:
        return [
            self.registry.to_new_event(event, field=f"{stream}.events[{i}]")
            for i, event in enumerate(events)
        ]

    def session(self) -> Session:
        """A unit of work: every aggregate loaded or added through it is saved together."""
        return Session(self)

    # -- snapshots --------------------------------------------------------------------

    def snapshot_interval(self, cls: type[Aggregate]) -> int | None:
        """Events between snapshots for ``cls`` (None: no snapshots)."""
        return self._snapshot_every.get(cls, cls.snapshot_every)

    def _due(self, cls: type[Aggregate], old: int, new: int) -> bool:
        """Whether going from version ``old`` to ``new`` crossed a snapshot boundary."""
        every = self.snapshot_interval(cls)
        return every is not None and every > 0 and (new + 1) // every > (old + 1) // every

    async def _write_snapshot(self, aggregate: Aggregate) -> None:
        """Save a snapshot; a failure is logged and never fails the caller's command."""
        try:
            await self.store.write_snapshot(
                aggregate.stream,
                aggregate.version,
                snapshot_state(aggregate),
                schema_version=aggregate.snapshot_version,
            )
        except KronikaError as exc:
            log.warning("could not snapshot %s: %s", aggregate.stream, exc.message)


class Session:
    """Tracks the aggregates of one decision and saves them in one atomic append."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._tracked: dict[str, Aggregate] = {}
        self._staged: dict[str, tuple[list[object], ExpectedVersionLike]] = {}

    async def get(self, cls: type[A], aggregate_id: str) -> A:
        """Load (once per session) and track an aggregate; ``AggregateNotFound`` if none."""
        found = await self.find(cls, aggregate_id)
        if found is None:
            raise AggregateNotFound(cls.__name__, aggregate_id)
        return found

    async def find(self, cls: type[A], aggregate_id: str) -> A | None:
        """Like :meth:`get`, but ``None`` when the aggregate does not exist.

        A missing aggregate is remembered too: if someone creates it before the commit, the
        commit fails, because the decision assumed it did not exist.
        """
        stream = f"{cls.category}-{aggregate_id}"
        if stream in self._tracked:
            tracked = self._tracked[stream]
            if not isinstance(tracked, cls):
                raise TypeError(f"{stream} is already tracked as a {type(tracked).__name__}")
            return tracked if tracked.version >= 0 or tracked.pending_events else None
        found = await self.repository.find(cls, aggregate_id)
        self._tracked[stream] = found if found is not None else cls(aggregate_id)
        return found

    def add(self, aggregate: Aggregate) -> None:
        """Track a new aggregate so the commit creates its stream."""
        existing = self._tracked.get(aggregate.stream)
        if existing is not None and existing is not aggregate and existing.version >= 0:
            raise TypeError(f"{aggregate.stream} is already tracked in this session")
        self._tracked[aggregate.stream] = aggregate

    async def decide(self, decider: Decider[C, S, E], entity_id: str, command: C) -> list[E]:
        """Run a decider on one entity and stage the events it decides for the commit."""
        stream = decider.stream(entity_id)
        if stream in self._tracked or stream in self._staged:
            raise TypeError(f"{stream} is already part of this session")
        recorded = await self.repository.store.read_stream(stream)
        state = decider.fold(self.repository.registry.from_recorded(r) for r in recorded)
        events = list(decider.decide(command, state))
        expected: ExpectedVersionLike = recorded[-1].version if recorded else NO_STREAM
        self._staged[stream] = (list(events), expected)
        return events

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        """Every aggregate the session tracks."""
        return tuple(self._tracked.values())

    async def commit(self) -> MultiAppendResult | None:
        """Save every changed aggregate; every other tracked one takes part in the check."""
        changed = [a for a in self._tracked.values() if a.pending_events]
        staged = {name: entry for name, entry in self._staged.items() if entry[0]}
        if not changed and not staged:
            return None
        read = [a for a in self._tracked.values() if not a.pending_events]
        return await self.repository._save(changed, read, staged)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
