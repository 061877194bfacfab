"""Correlation and causation: which message caused an event, and which conversation it is in.

Every appended event carries ``correlation_id`` and ``causation_id`` in its metadata. Inside a
:func:`caused_by` block (the command layer, the HTTP server and event handlers open one) new
events inherit them; outside any block an event starts a new conversation and is its own
cause (both ids are the event's own id). Values given explicitly in an event's metadata win.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["CORRELATION_ID", "CAUSATION_ID", "Causation", "caused_by", "current_causation"]

CORRELATION_ID = "correlation_id"
"""Metadata key of the conversation an event belongs to."""
CAUSATION_ID = "causation_id"
"""Metadata key of the message (command or event) that caused an event."""


@dataclass(frozen=True, slots=True)
class Causation:
    """The ids new events inherit."""

    correlation_id: str
    """The conversation: the id of the first message in it."""
    causation_id: str
    """The message being handled now."""


_current: ContextVar[Causation | None] = ContextVar("kronika_causation", default=None)


def current_causation() -> Causation | None:
    """The ids that events appended now inherit, if a :func:`caused_by` block is active."""
    return _current.get()


@contextmanager
def caused_by(message_id: object, correlation_id: object | None = None) -> Iterator[Causation]:
    """Events appended inside are caused by ``message_id``, in conversation ``correlation_id``.

    ``correlation_id`` defaults to the enclosing block's, or else to ``message_id`` (the
    message starts a conversation).
    """
    outer = _current.get()
    if correlation_id is None:
        correlation_id = outer.correlation_id if outer else message_id
    causation = Causation(str(correlation_id), str(message_id))
    token = _current.set(causation)
    try:
        yield causation
    finally:
        _current.reset(token)
