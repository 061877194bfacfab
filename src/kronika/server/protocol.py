"""uvicorn's HTTP protocol, writing each response to the socket once instead of twice.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and its body with ``http.response.body``: two ``send`` system
calls per answer, each running the kernel's TCP path for the peer on this core. On a
loaded server that was a fifth of the event loop's time. :class:`HttpProtocol` is uvicorn's
``httptools`` protocol with the connection's transport wrapped in a
:class:`CoalescingTransport`, which holds what is written during one turn of the event loop
and writes it in one call at the start of the next (or at once on ``close``), so a head and
the body sent right after it leave together, and the frames an event stream sends in one
turn too.

Order is kept (every write of the connection goes through the wrapper, uvicorn's own error
answers included); flow control is untouched (it watches the real transport, and at most
one turn's bytes wait). ``kronika serve`` passes :func:`http_protocol` to uvicorn; without
``httptools`` (not installed) it is uvicorn's default.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

__all__ = ["CoalescingTransport", "http_protocol"]


class CoalescingTransport:
    """A transport that writes everything written to it in one turn of the loop at once."""

    __slots__ = ("_loop", "_parts", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._parts: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` until the end of this turn of the loop."""
        if not data:
            return
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(data)

    def writelines(self, lines: Any) -> None:
        """Hold every line, as :meth:`write` does."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Write what is held now, in one call."""
        parts = self._parts
        if not parts:
            return
        self._parts = []
        if not self.transport.is_closing():
            self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def close(self) -> None:
        """Write what is held, then close (a ``Connection: close`` answer ends this way)."""
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        """Write what is held, then half-close."""
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        """Drop what is held and close at once."""
        self._parts = []
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        """Bytes held here plus those the real transport holds."""
        held = sum(len(part) for part in self._parts)
        return held + self.transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@functools.cache
def http_protocol() -> Any:
    """The protocol class for ``uvicorn.Config(http=...)``: :class:`HttpProtocol` when
    ``httptools`` is installed (``uvicorn[standard]``), else ``"auto"``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn without httptools
        return "auto"

    class HttpProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    return HttpProtocol
