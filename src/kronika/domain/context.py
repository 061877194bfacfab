"""Correlation and causation: which message caused an event, and which conversation it is in.

Every appended event carries ``correlation_id`` and ``causation_id`` in its metadata. Inside a
:func:`caused_by` block (the command layer, the HTTP server and event handlers open one) new
events inherit them; outside any block an event starts a new conversation and is its own
cause (both ids are the event's own id). Values given explicitly in an event's metadata win.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "Causation",
    "caused_by",
    "current_causation",
    "reset_cause",
    "set_cause",
]

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


_Pending = tuple[object, object, "_Cause"]
"""A cause set by :func:`set_cause`: (message id, correlation id or None, the enclosing
cause); its ids become strings only when asked for."""
_Cause = Causation | _Pending | None
_current: ContextVar[_Cause] = ContextVar("kronika_causation", default=None)


def _resolved(cause: _Cause) -> Causation | None:
    if not isinstance(cause, tuple):
        return cause
    message_id, correlation_id, outer = cause
    if correlation_id is None:
        enclosing = _resolved(outer)
        correlation_id = enclosing.correlation_id if enclosing else message_id
    return Causation(str(correlation_id), str(message_id))


def current_causation() -> Causation | None:
    """The ids that events appended now inherit, if a :func:`caused_by` block is active."""
    return _resolved(_current.get())


@contextmanager
def caused_by(message_id: object, correlation_id: object | None = None) -> Iterator[Causation]:
    """Events appended inside are caused by ``message_id``, in conversation ``correlation_id``.

    ``correlation_id`` defaults to the enclosing block's, or else to ``message_id`` (the
    message starts a conversation).
    """
    outer = current_causation()
    if correlation_id is None:
        correlation_id = outer.correlation_id if outer else message_id
    causation = Causation(str(correlation_id), str(message_id))
    token = _current.set(causation)
    try:
        yield causation
    finally:
        _current.reset(token)


def set_cause(message_id: object, correlation_id: object | None = None) -> Token[_Cause]:
    """What ``with caused_by(message_id, correlation_id)`` does on entry, for the runtime's
    hot path; undo it with :func:`reset_cause`.

    A worker sets one cause per handled event, and most handlers append nothing: this sets
    one context variable, and the ids become strings only if an event is appended (or
    :func:`current_causation` is called) before the reset.
    """
    outer = _current.get() if correlation_id is None else None
    return _current.set((message_id, correlation_id, outer))


reset_cause = _current.reset
"""Undo a :func:`set_cause` (given its token)."""
