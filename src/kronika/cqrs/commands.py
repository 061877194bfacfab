"""Commands: validated, handled in a unit of work, retried on conflicts.

    bus = CommandBus(repository)

    @bus.handler(Deposit)
    async def deposit(command: Deposit, session: Session) -> None:
        account = await session.get(Account, command.account_id)
        account.deposit(command.amount)

    await bus.dispatch(Deposit(account_id="42", amount=10))

``dispatch`` validates the command before anything is loaded, runs the handler in a fresh
session, commits it, and when a concurrent writer got there first (``ConcurrencyError`` or
``ConditionFailed``) reloads and runs the handler again after a jittered, growing delay.
When attempts run out it raises ``RetriesExhausted``. A ``DomainError`` is never retried.
Events appended while handling a command are caused by it (``causation_id`` = command id).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar, overload

import pydantic

from kronika.cqrs.registry import pydantic_errors
from kronika.cqrs.repository import Repository, Session
from kronika.domain.context import caused_by
from kronika.domain.decider import Decider
from kronika.domain.retry import RetryPolicy
from kronika.errors import ConfigurationError, ConflictError, DuplicateEventError, RetriesExhausted
from kronika.observability import metrics, tracing

__all__ = ["CommandBus", "CommandHandler"]

C = TypeVar("C")
R = TypeVar("R")
CommandHandler = Callable[[Any, Session], Awaitable[Any]]
"""An async function ``(command, session) -> result``."""


class _Registration(Generic[C]):
    def __init__(self, cls: type[C], handler: CommandHandler, retry: RetryPolicy) -> None:
        self.cls = cls
        self.handler = handler
        self.retry = retry
        self.adapter: pydantic.TypeAdapter[C] = pydantic.TypeAdapter(cls)

    def validate(self, command: Any) -> C:
        """Check an instance (or build one from a mapping); Kronika's ValidationError if bad."""
        try:
            if isinstance(command, self.cls):
                return self.adapter.validate_python(self.adapter.dump_python(command))
            return self.adapter.validate_python(command)
        except pydantic.ValidationError as exc:
            raise pydantic_errors(exc) from None


class CommandBus:
    """Routes commands to their handlers, with validation, retries and causation."""

    def __init__(self, repository: Repository, *, retry: RetryPolicy | None = None) -> None:
        self.repository = repository
        self.retry = retry or RetryPolicy()
        self._handlers: dict[type, _Registration[Any]] = {}
        self._names: dict[str, type] = {}

    # -- registration -----------------------------------------------------------------

    def register(
        self, cls: type[C], handler: CommandHandler, *, retry: RetryPolicy | None = None
    ) -> None:
        """Route commands of type ``cls`` to ``handler``."""
        if cls in self._handlers:
            raise ConfigurationError(f"{cls.__qualname__} already has a handler")
        self._handlers[cls] = _Registration(cls, handler, retry or self.retry)
        self._names[cls.__name__] = cls

    def handler(
        self, cls: type[C], *, retry: RetryPolicy | None = None
    ) -> Callable[[Callable[[C, Session], Awaitable[R]]], Callable[[C, Session], Awaitable[R]]]:
        """Decorator form of :meth:`register`."""

        def decorate(
            func: Callable[[C, Session], Awaitable[R]],
        ) -> Callable[[C, Session], Awaitable[R]]:
            self.register(cls, func, retry=retry)
            return func

        return decorate

    def decider(
        self, cls: type[C], decider: Decider[C, Any, Any], *, entity_id: Callable[[C], str]
    ) -> None:
        """Handle ``cls`` with a decider: load the entity's events, decide, append the result."""

        async def run(command: C, session: Session) -> list[Any]:
            return await session.decide(decider, entity_id(command), command)

        self.register(cls, run)

    def command_type(self, name: str) -> type:
        """The registered command class called ``name`` (for commands arriving as JSON)."""
        try:
            return self._names[name]
        except KeyError:
            raise ConfigurationError(f"no command called {name!r} is registered") from None

    # -- dispatching ------------------------------------------------------------------

    @overload
    async def dispatch(self, command: C) -> Any: ...
    @overload
    async def dispatch(self, command: type[C], payload: Mapping[str, Any]) -> Any: ...
    async def dispatch(self, command: Any, payload: Mapping[str, Any] | None = None) -> Any:
        """Validate and handle a command (an instance, or a class plus a JSON-like payload)."""
        cls = command if payload is not None else type(command)
        registration = self._handlers.get(cls)
        if registration is None:
            raise ConfigurationError(f"no handler is registered for {cls.__qualname__}")
        valid = registration.validate(payload if payload is not None else command)
        command_id = getattr(valid, "command_id", None) or uuid.uuid4()
        attributes = {"kronika.command": cls.__name__, "kronika.command_id": str(command_id)}
        with caused_by(command_id), tracing.span("kronika.command", attributes):
            return await metrics.timed_command(cls.__name__, self._attempt(registration, valid))

    async def _attempt(self, registration: _Registration[Any], command: Any) -> Any:
        delays = registration.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            session = self.repository.session()
            try:
                result = await registration.handler(command, session)
                await session.commit()
            except DuplicateEventError:
                raise
            except ConflictError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise RetriesExhausted(attempt, exc) from exc
                await asyncio.sleep(delay)
                continue
            return result
