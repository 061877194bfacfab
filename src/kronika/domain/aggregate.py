"""Event-sourced aggregates: state rebuilt from events, changes recorded as new events.

    class Account(Aggregate):
        balance: int = 0

        def deposit(self, amount: int) -> None:
            if amount <= 0:
                raise DomainError("a deposit must be positive")
            self.record(Deposited(amount=amount))

        @apply
        def _deposited(self, event: Deposited) -> None:
            self.balance += event.amount

The aggregate's stream is ``f"{category}-{id}"``; ``category`` defaults to the lower-cased
class name. ``version`` is the version of the last *stored* event (-1 when new); recorded
but unsaved events wait in ``pending_events``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, overload

from kronika.errors import ConfigurationError

__all__ = ["Aggregate", "apply"]

F = TypeVar("F", bound=Callable[..., None])
_APPLIES = "__kronika_applies__"


@overload
def apply(func: F) -> F: ...
@overload
def apply(func: type) -> Callable[[F], F]: ...
def apply(func: Any) -> Any:
    """Mark a method as the handler that applies one event type to the aggregate's state.

    Use it bare (the event type is taken from the annotation of the method's event
    parameter) or as ``@apply(EventClass)``.
    """
    if isinstance(func, type):
        event_type = func

        def mark(method: F) -> F:
            setattr(method, _APPLIES, event_type)
            return method

        return mark
    setattr(func, _APPLIES, None)
    return func


def _event_type_of(owner: type, method: Callable[..., None]) -> type:
    explicit = getattr(method, _APPLIES)
    if explicit is not None:
        return explicit  # type: ignore[no-any-return]
    try:
        hints = typing.get_type_hints(method)
    except NameError as exc:
        raise ConfigurationError(
            f"{owner.__name__}.{method.__name__}: cannot resolve its event type ({exc}); define "
            "the event class before the aggregate or use @apply(EventClass)"
        ) from None
    params = [name for name in hints if name != "return"]
    if len(params) != 1 or not isinstance(hints[params[0]], type):
        raise ConfigurationError(
            f"{owner.__name__}.{method.__name__}: an @apply method takes one annotated event "
            "parameter, e.g. def _(self, event: Deposited) -> None"
        )
    return hints[params[0]]  # type: ignore[no-any-return]


class Aggregate:
    """Base class of event-sourced aggregates (see the module docstring)."""

    category: ClassVar[str] = ""
    """Stream category; defaults to the lower-cased class name. Must not contain ``-``."""
    snapshot_every: ClassVar[int | None] = None
    """Take a snapshot every this many events (None: never)."""
    snapshot_version: ClassVar[int] = 1
    """Bump when the snapshot's shape changes; older snapshots are then ignored and rebuilt."""
    _appliers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("category"):
            cls.category = cls.__name__.lower()
        if "-" in cls.category or not cls.category:
            raise ConfigurationError(
                f"{cls.__name__}.category must be non-empty and contain no '-'"
            )
        appliers: dict[type, Callable[[Any, Any], None]] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                if callable(member) and hasattr(member, _APPLIES):
                    appliers[_event_type_of(klass, member)] = member
        cls._appliers = appliers

    def __init__(self, id: str) -> None:
        self.id = id
        """The aggregate's id, unique within its category."""
        self.version = -1
        """Version of the last stored event applied (-1: nothing stored yet)."""
        self._pending: list[object] = []

    @property
    def stream(self) -> str:
        """The name of the stream that holds this aggregate's events."""
        return f"{self.category}-{self.id}"

    @property
    def pending_events(self) -> tuple[object, ...]:
        """Events recorded since the aggregate was loaded or last saved."""
        return tuple(self._pending)

    def record(self, event: object) -> None:
        """Apply a new event to the state and keep it for saving."""
        self.apply_event(event)
        self._pending.append(event)

    def apply_event(self, event: object) -> None:
        """Apply one event to the state (events without an @apply handler change nothing)."""
        handler = self._appliers.get(type(event))
        if handler is not None:
            handler(self, event)

    def mark_saved(self, version: int) -> None:
        """Called by the repository after a save: pending events are now stored."""
        self._pending.clear()
        self.version = version

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} v{self.version}>"
