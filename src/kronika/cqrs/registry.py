"""Typed events: classes registered under a stable type name and version, with upcasters.

The primary style is a frozen pydantic model (subclass :class:`Event`); dataclasses work too,
because both go through a pydantic ``TypeAdapter``::

    @event("AccountOpened", version=2)
    class AccountOpened(Event):
        owner: str
        currency: str

    @upcaster("AccountOpened", from_version=1)
    def _add_currency(data: dict) -> dict:
        return {**data, "currency": "EUR"}

The type's version travels in the event's metadata under ``event_version``. On read, stored
data is upcast step by step (v1 -> v2 -> v3) to the registered version, then validated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import pydantic
from pydantic_core import PydanticSerializationError

from kronika.domain.events import NewEvent, RecordedEvent
from kronika.errors import ConfigurationError, UnreadableEvent, ValidationError

__all__ = [
    "EVENT_VERSION",
    "Event",
    "EventRegistry",
    "EventType",
    "MissingUpcast",
    "default_registry",
    "event",
    "pydantic_errors",
    "upcaster",
    "validate",
]

EVENT_VERSION = "event_version"
"""Metadata key holding the version of the event's type."""

T = TypeVar("T")
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(pydantic.BaseModel):
    """Base class for events: an immutable pydantic model that refuses unknown fields."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


def pydantic_errors(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    """Translate pydantic's error into Kronika's, one (field, message) pair per problem."""
    pairs = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"])
        field = f"{prefix}.{location}" if prefix and location else prefix or location
        pairs.append((field, error["msg"]))
    return ValidationError(pairs)


def validate(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build a ``cls`` from ``data`` (or check an instance), raising Kronika's ValidationError."""
    try:
        return pydantic.TypeAdapter(cls).validate_python(data)
    except pydantic.ValidationError as exc:
        raise pydantic_errors(exc, prefix) from None


@dataclass(frozen=True, slots=True)
class EventType:
    """One registered event class."""

    name: str
    """The stable type name stored with each event."""
    version: int
    """The current version of its shape."""
    cls: type
    """The class events of this type are read into."""
    adapter: pydantic.TypeAdapter[Any]
    """Serialises and validates instances."""


@dataclass(frozen=True, slots=True)
class MissingUpcast:
    """A stored (type, version) pair that cannot be read into a registered class."""

    type: str
    """The stored type name."""
    version: int
    """The stored version."""
    reason: str
    """Why it cannot be read."""


class EventRegistry:
    """Maps event classes to type names and versions, and upcasts old versions on read."""

    def __init__(self) -> None:
        self._by_class: dict[type, EventType] = {}
        self._by_name: dict[str, EventType] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    # -- registration -----------------------------------------------------------------

    def register(self, cls: type[T], name: str | None = None, *, version: int = 1) -> type[T]:
        """Register ``cls`` under ``name`` (default: the class name) at ``version``."""
        name = name or cls.__name__
        if not isinstance(version, int) or version < 1:
            raise ConfigurationError(f"event {name!r}: version must be an integer >= 1")
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise ConfigurationError(
                f"event type {name!r} is already registered to {existing.cls.__qualname__}"
            )
        entry = EventType(name, version, cls, pydantic.TypeAdapter(cls))
        self._by_class[cls] = entry
        self._by_name[name] = entry
        return cls

    @overload
    def event(self, name: type[T]) -> type[T]: ...
    @overload
    def event(
        self, name: str | None = None, *, version: int = 1
    ) -> Callable[[type[T]], type[T]]: ...
    def event(self, name: Any = None, *, version: int = 1) -> Any:
        """Class decorator form of :meth:`register`; usable bare or with a name/version."""
        if isinstance(name, type):
            return self.register(name)

        def decorate(cls: type[T]) -> type[T]:
            return self.register(cls, name, version=version)

        return decorate

    def upcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning ``name``'s data at ``from_version`` into the next version."""
        key = (name, from_version)
        if key in self._upcasters:
            raise ConfigurationError(f"an upcaster for {name!r} from version {from_version} exists")

        def decorate(func: Upcaster) -> Upcaster:
            self._upcasters[key] = func
            return func

        return decorate

    def type_of(self, cls: type) -> EventType:
        """The registration of an event class."""
        entry = self._by_class.get(cls)
        if entry is None:
            raise ConfigurationError(
                f"{cls.__qualname__} is not a registered event class (decorate it with @event)"
            )
        return entry

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_class

    # -- writing ----------------------------------------------------------------------

    def to_new_event(
        self,
        obj: object,
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        field: str = "event",
    ) -> NewEvent:
        """Serialise a registered event object, validating it again first."""
        entry = self.type_of(type(obj))
        try:
            data = entry.adapter.dump_python(obj, mode="json", warnings="error")
            entry.adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise pydantic_errors(exc, f"{field}.data") from None
        except PydanticSerializationError as exc:
            raise self._field_errors(entry, obj, field) or ValidationError(
                f"cannot be serialised: {exc}", f"{field}.data"
            ) from None
        meta = {**(metadata or {}), EVENT_VERSION: entry.version}
        return NewEvent(entry.name, data, meta, tags=tuple(tags))

    @staticmethod
    def _field_errors(entry: EventType, obj: object, field: str) -> ValidationError | None:
        """Field-level errors of an object whose fields do not fit their declared types."""
        try:
            entry.adapter.validate_python(entry.adapter.dump_python(obj, warnings=False))
        except pydantic.ValidationError as exc:
            return pydantic_errors(exc, f"{field}.data")
        return None

    # -- reading ----------------------------------------------------------------------

    def upcast(
        self, name: str, version: int, data: dict[str, Any]
    ) -> tuple[EventType, dict[str, Any]]:
        """Bring stored ``data`` of type ``name`` at ``version`` up to the registered version."""
        entry = self._by_name.get(name)
        if entry is None:
            raise UnreadableEvent(name, version, "no class is registered for this type")
        if version > entry.version:
            raise UnreadableEvent(
                name, version, f"it is newer than the registered version {entry.version}"
            )
        while version < entry.version:
            step = self._upcasters.get((name, version))
            if step is None:
                raise UnreadableEvent(name, version, f"no upcaster from version {version}")
            data = step(data)
            version += 1
        return entry, data

    def from_recorded(self, recorded: RecordedEvent) -> Any:
        """The registered class instance for a stored event (upcast and validated)."""
        version = recorded.metadata.get(EVENT_VERSION, 1)
        if not isinstance(version, int):
            raise UnreadableEvent(recorded.type, 0, f"metadata {EVENT_VERSION} is {version!r}")
        entry, data = self.upcast(recorded.type, version, recorded.data)
        try:
            return entry.adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise UnreadableEvent(
                recorded.type, version, f"event {recorded.id}: {pydantic_errors(exc, 'data')}"
            ) from None

    def missing_upcasts(self, stored: Iterable[tuple[str, int]]) -> list[MissingUpcast]:
        """The stored (type, version) pairs that cannot be read, each with the reason."""
        missing = []
        for name, version in sorted(set(stored)):
            try:
                self.upcast(name, version, {})
            except UnreadableEvent as exc:
                missing.append(MissingUpcast(name, version, exc.message))
            except Exception:  # noqa: S112 - an upcaster may reject an empty dict; the path exists
                continue
        return missing


default_registry = EventRegistry()
"""The registry used when none is given."""
event = default_registry.event
"""Register an event class in the default registry."""
upcaster = default_registry.upcaster
"""Register an upcaster in the default registry."""
