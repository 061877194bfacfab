"""Kronika: an event-sourcing platform for Python.

    async with kronika.open_store("sqlite:///kronika.db") as store:
        await store.append("order-1", [kronika.NewEvent("OrderPlaced", {"total": 12})],
                           expected_version=kronika.NO_STREAM)
"""

from kronika.domain.context import Causation, caused_by, current_causation
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
    StreamAppend,
    StreamInfo,
    StreamState,
    category_of,
)
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    ConfigurationError,
    ConflictError,
    DuplicateEventError,
    Forbidden,
    KronikaError,
    NotFound,
    RateLimited,
    SchemaError,
    StoreClosed,
    StreamDeleted,
    StreamNotFound,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from kronika.store import EventStore, open_store

__version__ = "0.1.0.dev0"

__all__ = [
    "ANY",
    "AppendCondition",
    "AppendResult",
    "Causation",
    "ConcurrencyError",
    "ConditionFailed",
    "ConfigurationError",
    "ConflictError",
    "DuplicateEventError",
    "EventStore",
    "ExpectedVersion",
    "Forbidden",
    "KronikaError",
    "MultiAppendResult",
    "NO_STREAM",
    "NewEvent",
    "NotFound",
    "RateLimited",
    "RecordedEvent",
    "STREAM_EXISTS",
    "SchemaError",
    "StoreClosed",
    "StreamAppend",
    "StreamDeleted",
    "StreamInfo",
    "StreamNotFound",
    "StreamState",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "__version__",
    "category_of",
    "caused_by",
    "current_causation",
    "open_store",
]
