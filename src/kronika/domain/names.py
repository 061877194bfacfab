"""Validation of names, tags, positions and limits shared by every backend.

Each check raises :class:`kronika.errors.ValidationError` naming the field and returns the
value unchanged when it is valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kronika.errors import ValidationError

MAX_STREAM_LENGTH = 256
"""Longest stream name, in characters."""
MAX_TYPE_LENGTH = 256
"""Longest event type name, in characters."""
MAX_TAG_LENGTH = 256
"""Longest tag, in characters."""
MAX_TAGS = 64
"""Most tags on one event or condition."""
MAX_EVENTS_PER_APPEND = 65_535
"""Most events in one append (all streams of a multi-stream append together)."""
MAX_NAMESPACE_LENGTH = 63
"""Longest namespace (tenant) name."""
DEFAULT_NAMESPACE = "default"
"""The namespace used when none is configured."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Unicode categories Cc (control) and Cs (surrogate): exactly these code points."""


def check_name(value: object, field: str, max_length: int) -> str:
    """A non-empty string without control characters, at most ``max_length`` long."""
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field)
    if not value or value.isspace():
        raise ValidationError("must not be empty", field)
    if len(value) > max_length:
        raise ValidationError(f"must be at most {max_length} characters, got {len(value)}", field)
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValidationError(f"must not contain control characters (found {bad.group()!r})", field)
    return value


def check_stream(value: object, field: str = "stream") -> str:
    """A valid stream name."""
    return check_name(value, field, MAX_STREAM_LENGTH)


def check_namespace(value: object, field: str = "namespace") -> str:
    """A valid namespace: letters, digits, ``_`` and ``-``."""
    name = check_name(value, field, MAX_NAMESPACE_LENGTH)
    if not all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name):
        raise ValidationError("may contain only ASCII letters, digits, '_' and '-'", field)
    return name


def check_tags(values: object, field: str) -> tuple[str, ...]:
    """A sequence of valid tags, returned as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError("must be a sequence of strings", field)
    tags = tuple(values)
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} tags, got {len(tags)}", field)
    for i, tag in enumerate(tags):
        check_name(tag, f"{field}[{i}]", MAX_TAG_LENGTH)
    return tags


def check_filter(values: object, field: str) -> tuple[str, ...] | None:
    """An optional filter list (types, categories or tags) for global reads."""
    if values is None:
        return None
    return check_tags(values, field)


def _check_int(value: object, field: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"must be an integer, got {type(value).__name__}", field)
    if value < minimum:
        raise ValidationError(f"must be >= {minimum}, got {value}", field)
    return value


def check_position(value: object, field: str = "from_position") -> int:
    """A global position (>= 0)."""
    return _check_int(value, field, 0)


def check_version(value: object, field: str = "from_version") -> int:
    """A stream version (>= 0)."""
    return _check_int(value, field, 0)


def check_limit(value: object, field: str = "limit") -> int | None:
    """An optional positive limit."""
    if value is None:
        return None
    return _check_int(value, field, 1)


def check_max_age(value: object, field: str = "max_age") -> float | None:
    """An optional positive age in seconds."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValidationError(f"must be a positive number of seconds, got {value!r}", field)
    return float(value)
