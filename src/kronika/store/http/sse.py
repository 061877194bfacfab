"""A Server-Sent Events parser (the WHATWG ``text/event-stream`` rules), fed line by line.

Pure and synchronous so it is tested without a network: the live subscription feeds it the
lines httpx reads and acts on the frames it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Frame", "FrameParser"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched event."""

    event: str
    """The ``event:`` field, ``message`` when absent."""
    data: str
    """The ``data:`` lines joined by newlines."""
    id: str | None
    """The last ``id:`` seen on the stream so far (SSE ids persist across frames)."""


class FrameParser:
    """Collects fields until a blank line, then dispatches a :class:`Frame`.

    Comments (``: keep-alive``) and unknown fields are ignored; ``retry:`` is kept in
    :attr:`retry_ms` for the caller's reconnection delay.
    """

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._has_data = False

    def feed(self, line: str) -> Frame | None:
        """Take one line (without its line ending); a frame when the line ends one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Frame | None:
        event, data, has_data = self._event, self._data, self._has_data
        self._event, self._data, self._has_data = "", [], False
        if not has_data:
            return None
        return Frame(event=event or "message", data="\n".join(data), id=self.last_id)
