"""Kronika: an event-sourcing platform for Python.

Example::

    async with kronika.open_store("sqlite:///kronika.db") as store:
        placed = kronika.NewEvent("OrderPlaced", {"total": 12})
        await store.append("order-1", [placed], expected_version=kronika.NO_STREAM)
"""

from typing import TYPE_CHECKING, Any

from kronika.domain.aggregate import Aggregate, apply
from kronika.domain.context import Causation, caused_by, current_causation
from kronika.domain.decider import Decider
from kronika.domain.events import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendCondition,
    AppendResult,
    ExpectedVersion,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
    StreamState,
    category_of,
)
from kronika.domain.retry import Backoff, RetryPolicy
from kronika.errors import (
    AggregateNotFound,
    ConcurrencyError,
    ConditionFailed,
    ConfigurationError,
    ConflictError,
    DomainError,
    DuplicateEventError,
    Forbidden,
    InlineProjectionFailed,
    KronikaError,
    NotFound,
    RateLimited,
    RetriesExhausted,
    SchemaError,
    StoreClosed,
    StreamDeleted,
    StreamNotFound,
    Unauthorized,
    Unavailable,
    UnreadableEvent,
    ValidationError,
)
from kronika.store import EventStore, open_store

if TYPE_CHECKING:
    from kronika.cqrs import CommandBus, Event, EventRegistry, Repository, Session, event, upcaster

_WRITE_SIDE = ("CommandBus", "Event", "EventRegistry", "Repository", "Session", "event", "upcaster")
_LAZY = dict.fromkeys(_WRITE_SIDE, "kronika.cqrs")
"""Write-side names, imported on first use: they load pydantic, which the CLI rarely needs."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kronika' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "ANY",
    "Aggregate",
    "AggregateNotFound",
    "AppendCondition",
    "AppendResult",
    "Backoff",
    "Causation",
    "CommandBus",
    "ConcurrencyError",
    "ConditionFailed",
    "ConfigurationError",
    "ConflictError",
    "Decider",
    "DomainError",
    "DuplicateEventError",
    "Event",
    "EventRegistry",
    "EventStore",
    "ExpectedVersion",
    "Forbidden",
    "InlineProjectionFailed",
    "KronikaError",
    "MultiAppendResult",
    "NO_STREAM",
    "NewEvent",
    "NotFound",
    "RateLimited",
    "RecordedEvent",
    "Repository",
    "RetriesExhausted",
    "RetryPolicy",
    "STREAM_EXISTS",
    "SchemaError",
    "Session",
    "Snapshot",
    "StoreClosed",
    "StreamAppend",
    "StreamDeleted",
    "StreamInfo",
    "StreamNotFound",
    "StreamState",
    "Unauthorized",
    "Unavailable",
    "UnreadableEvent",
    "ValidationError",
    "__version__",
    "apply",
    "category_of",
    "caused_by",
    "current_causation",
    "event",
    "open_store",
    "upcaster",
]
