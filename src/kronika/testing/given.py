"""Given / when / then helpers for aggregates and command handlers.

Aggregates are pure, so their tests need no store::

    def test_withdrawing_too_much_is_refused():
        (given(Account, "1", Opened(owner="ann"), Deposited(amount=10))
            .when(lambda account: account.withdraw(50))
            .then_raises(InsufficientFunds))

Command handlers run against an in-memory store::

    async def test_deposit():
        scenario = CommandScenario(make_bus)          # make_bus(repository) -> CommandBus
        await scenario.given(Account, "1", Opened(owner="ann"))
        await scenario.when(Deposit(account_id="1", amount=5))
        await scenario.then(Account, "1", Deposited(amount=5))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

from kronika.cqrs.commands import CommandBus
from kronika.cqrs.registry import EventRegistry, default_registry
from kronika.cqrs.repository import Repository
from kronika.domain.aggregate import Aggregate
from kronika.store import open_store
from kronika.store.protocol import EventStore

__all__ = ["AggregateScenario", "CommandScenario", "given"]

A = TypeVar("A", bound=Aggregate)


class AggregateScenario(Generic[A]):
    """An aggregate built from past events, a behaviour to run, and checks on the outcome."""

    def __init__(self, cls: type[A], aggregate_id: str, history: tuple[object, ...]) -> None:
        self.aggregate = cls(aggregate_id)
        for event in history:
            self.aggregate.apply_event(event)
        self.aggregate.version = len(history) - 1
        self._error: BaseException | None = None
        self._ran = False

    def when(self, action: Callable[[A], Any]) -> Self:
        """Run ``action(aggregate)``, keeping any exception for :meth:`then_raises`."""
        try:
            action(self.aggregate)
        except Exception as exc:
            self._error = exc
        self._ran = True
        return self

    def then(self, *expected: object) -> Self:
        """Assert that exactly ``expected`` events were recorded, in order."""
        self._require_ran()
        if self._error is not None:
            raise AssertionError(
                f"expected events, but the action raised {self._error!r}"
            ) from self._error
        recorded = list(self.aggregate.pending_events)
        if recorded != list(expected):
            raise AssertionError(
                f"recorded events differ:\n  expected {list(expected)!r}\n  got      {recorded!r}"
            )
        return self

    def then_raises(self, error: type[BaseException], match: str | None = None) -> Self:
        """Assert the action raised ``error`` (matching ``match``) and recorded nothing."""
        self._require_ran()
        if not isinstance(self._error, error):
            raise AssertionError(f"expected {error.__name__}, got {self._error!r}")  # noqa: TRY004
        if match is not None and not re.search(match, str(self._error)):
            raise AssertionError(f"{self._error!r} does not match {match!r}")
        if self.aggregate.pending_events:
            raise AssertionError(
                f"events were recorded despite the error: {self.aggregate.pending_events!r}"
            )
        return self

    def then_state(self, check: Callable[[A], object]) -> Self:
        """Assert ``check(aggregate)`` is truthy (use it for state the events don't show)."""
        self._require_ran()
        if not check(self.aggregate):
            raise AssertionError(f"state check failed on {self.aggregate!r}")
        return self

    def _require_ran(self) -> None:
        if not self._ran:
            raise AssertionError("call when(...) before then(...)")


def given(cls: type[A], aggregate_id: str, *history: object) -> AggregateScenario[A]:
    """Start an aggregate scenario from past events."""
    return AggregateScenario(cls, aggregate_id, history)


class CommandScenario:
    """Command handlers run against a fresh in-memory store."""

    def __init__(
        self,
        make_bus: Callable[[Repository], CommandBus],
        *,
        registry: EventRegistry = default_registry,
        store: EventStore | None = None,
    ) -> None:
        self.store = store or open_store("memory://")
        self.repository = Repository(self.store, registry=registry)
        self.bus = make_bus(self.repository)
        self.result: Any = None
        self.error: BaseException | None = None
        self._before: dict[str, int] = {}

    async def given(self, cls: type[Aggregate], aggregate_id: str, *history: object) -> Self:
        """Store past events of one aggregate."""
        await self.store.open()
        aggregate = cls(aggregate_id)
        for event in history:
            aggregate.record(event)
        await self.repository.save(aggregate)
        return self

    async def when(self, command: object) -> Self:
        """Dispatch ``command``, keeping its result or error."""
        await self.store.open()
        self._before = {e.stream: e.version for e in await self.store.read_all()}
        try:
            self.result = await self.bus.dispatch(command)
        except Exception as exc:
            self.error = exc
        return self

    async def then(self, cls: type[Aggregate], aggregate_id: str, *expected: object) -> Self:
        """Assert the command appended exactly ``expected`` to that aggregate's stream."""
        if self.error is not None:
            raise AssertionError(f"the command raised {self.error!r}") from self.error
        stream = cls(aggregate_id).stream
        start = self._before.get(stream, -1) + 1
        recorded = await self.store.read_stream(stream, from_version=start)
        got = [self.repository.registry.from_recorded(e) for e in recorded]
        if got != list(expected):
            raise AssertionError(f"{stream}: expected {list(expected)!r}, got {got!r}")
        return self

    async def then_raises(self, error: type[BaseException], match: str | None = None) -> Self:
        """Assert the command failed with ``error`` and appended nothing."""
        if not isinstance(self.error, error):
            raise AssertionError(f"expected {error.__name__}, got {self.error!r}")  # noqa: TRY004
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(f"{self.error!r} does not match {match!r}")
        after = {e.stream: e.version for e in await self.store.read_all()}
        if after != self._before:
            raise AssertionError("events were appended despite the error")
        return self
