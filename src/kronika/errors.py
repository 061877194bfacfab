"""Kronika's one exception tree.

Every error Kronika raises is a :class:`KronikaError`. Driver errors (sqlite3, psycopg)
never reach callers: each backend translates them at its boundary.

    KronikaError
    ├── ValidationError          422  bad input; ``errors`` lists (field, message) pairs
    ├── DomainError              422  a business rule refused a command (never retried)
    ├── ConflictError            409  the write conflicts with the current state
    │   ├── ConcurrencyError          stream not at the expected version
    │   ├── ConditionFailed           an append condition (consistency boundary) matched
    │   ├── DuplicateEventError       an event id was reused with different content
    │   └── RetriesExhausted          a command still conflicted after its last attempt
    ├── StreamDeleted            410  the stream is tombstoned (hard-deleted)
    ├── NotFound                 404
    │   ├── StreamNotFound
    │   └── AggregateNotFound
    ├── UnreadableEvent          500  a stored event's type/version has no registered class
    ├── InlineProjectionFailed   500  an inline projection's handler failed: nothing appended
    ├── Unauthorized             401
    ├── Forbidden                403
    ├── RateLimited              429  ``retry_after`` seconds
    ├── Unavailable              503  the database or a dependency is unreachable
    │   └── StoreClosed               the store was closed or never opened
    ├── SchemaError              500  the database schema does not match the code
    └── ConfigurationError       500  a setting or URL is invalid

Each class carries ``status`` (the HTTP status the server answers with) and ``code`` (a
stable machine-readable string) so the server can map errors without a lookup table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AggregateNotFound",
    "ConcurrencyError",
    "ConditionFailed",
    "ConfigurationError",
    "ConflictError",
    "DomainError",
    "DuplicateEventError",
    "FieldError",
    "Forbidden",
    "InlineProjectionFailed",
    "KronikaError",
    "NotFound",
    "RateLimited",
    "RetriesExhausted",
    "SchemaError",
    "StoreClosed",
    "StreamDeleted",
    "StreamNotFound",
    "Unauthorized",
    "Unavailable",
    "UnreadableEvent",
    "ValidationError",
]

FieldError = tuple[str, str]
"""A ``(field, message)`` pair, e.g. ``("events[0].type", "must not be empty")``."""


class KronikaError(Exception):
    """Base of every error Kronika raises."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """The error's public fields, as a problem+json body would carry them."""
        return {"code": self.code, "detail": self.message}


class ValidationError(KronikaError, ValueError):
    """Input was rejected before anything was written."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: Sequence[FieldError] | str, field: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [(field or "", errors)]
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in self.errors))

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["errors"] = [{"field": f, "message": m} for f, m in self.errors]
        return body


class DomainError(KronikaError):
    """A business rule refused the command. Raise it (or a subclass) from aggregates and
    deciders; the command layer never retries it."""

    status = 422
    code = "domain_rule_violated"


class ConflictError(KronikaError):
    """The write conflicts with what is stored; reload and decide again."""

    status = 409
    code = "conflict"


class ConcurrencyError(ConflictError):
    """The stream is not at the expected version."""

    code = "wrong_expected_version"

    def __init__(self, stream: str, expected: int | str, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected version {expected}, but it is at {shown}")

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body.update(stream=self.stream, expected_version=self.expected, actual_version=self.actual)
        return body


class ConditionFailed(ConflictError):
    """An append condition matched an event appended after the given position."""

    code = "append_condition_failed"

    def __init__(self, message: str, *, position: int | None = None) -> None:
        self.position = position
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["position"] = self.position
        return body


class DuplicateEventError(ConflictError):
    """An event id that is already stored was sent again with different content."""

    code = "duplicate_event_id"

    def __init__(self, event_id: str, reason: str) -> None:
        self.event_id = event_id
        super().__init__(f"event id {event_id} is already stored {reason}")

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["event_id"] = self.event_id
        return body


class RetriesExhausted(ConflictError):
    """A command kept conflicting with concurrent writers until its attempts ran out."""

    code = "retries_exhausted"

    def __init__(self, attempts: int, last: ConflictError) -> None:
        self.attempts = attempts
        self.last = last
        super().__init__(f"gave up after {attempts} attempts: {last.message}")


class StreamDeleted(KronikaError):
    """The stream was hard-deleted (tombstoned) and can never be written or read again."""

    status = 410
    code = "stream_deleted"

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} is deleted (tombstoned)")

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["stream"] = self.stream
        return body


class NotFound(KronikaError):
    """Something that was asked for does not exist."""

    status = 404
    code = "not_found"


class StreamNotFound(NotFound):
    """The stream does not exist."""

    code = "stream_not_found"

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} does not exist")

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["stream"] = self.stream
        return body


class AggregateNotFound(NotFound):
    """No aggregate with this id has any stored event."""

    code = "aggregate_not_found"

    def __init__(self, kind: str, aggregate_id: str) -> None:
        self.kind = kind
        self.aggregate_id = aggregate_id
        super().__init__(f"{kind} {aggregate_id!r} does not exist")


class UnreadableEvent(KronikaError):
    """A stored event cannot be turned into a registered class: unknown type, no upcaster
    path from its version, or data that no longer validates."""

    code = "unreadable_event"

    def __init__(self, event_type: str, version: int, reason: str) -> None:
        self.event_type = event_type
        self.version = version
        super().__init__(f"cannot read event type {event_type!r} version {version}: {reason}")


class InlineProjectionFailed(KronikaError):
    """An inline projection's handler failed (or its SQL did), so the append it ran in was
    rolled back: no event and no read-model row was written. The handler's exception is
    chained as ``__cause__``."""

    code = "inline_projection_failed"

    def __init__(
        self, projection: str, reason: str, *, event_id: str, event_type: str, stream: str
    ) -> None:
        self.projection = projection
        self.event_id = event_id
        self.event_type = event_type
        self.stream = stream
        super().__init__(
            f"inline projection {projection!r} failed on event {event_id} ({event_type}) of "
            f"stream {stream!r}: {reason}; nothing was appended"
        )

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body.update(
            projection=self.projection,
            event_id=self.event_id,
            event_type=self.event_type,
            stream=self.stream,
        )
        return body


class Unauthorized(KronikaError):
    """No valid credentials were presented."""

    status = 401
    code = "unauthorized"


class Forbidden(KronikaError):
    """The credentials do not allow this operation."""

    status = 403
    code = "forbidden"


class RateLimited(KronikaError):
    """Too many requests; try again after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Unavailable(KronikaError):
    """The database or another dependency cannot be reached now; a later call may work."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StoreClosed(Unavailable):
    """The store was closed, or used before it was opened."""

    code = "store_closed"

    def __init__(self, message: str = "the store is not open (use 'async with open_store(...)')"):
        super().__init__(message, retry_after=0)


class SchemaError(KronikaError):
    """The database schema does not match this version of Kronika."""

    code = "schema_mismatch"


class ConfigurationError(KronikaError):
    """A setting, option or URL is invalid."""

    code = "configuration_error"
