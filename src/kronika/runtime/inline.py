"""Inline projections: read models the store updates inside each append's transaction (K8).

    class OrderTotals(InlineProjection):
        name = "order-totals"
        tables = {"order_totals": "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, "
                                  "total INTEGER NOT NULL)"}

        @on(OrderPlaced)                       # a registered event class: decoded, typed
        def placed(self, event: OrderPlaced, ctx: InlineContext) -> None:
            ctx.write("INSERT INTO order_totals VALUES (?, ?)", (ctx.event.stream, event.total))

        @on("OrderCancelled")                  # a type name: the RecordedEvent
        def cancelled(self, event: RecordedEvent, ctx: InlineContext) -> None:
            ctx.write("DELETE FROM order_totals WHERE id = ?", (event.stream,))

    store = open_store("sqlite:///app.db", inline=[OrderTotals()])

Unlike a :class:`~kronika.runtime.Projection`, an inline projection runs no worker and has no
checkpoint: its handlers are synchronous and run in the appending process, after the events
are stored and before the commit. If one raises, the append fails with
:class:`~kronika.errors.InlineProjectionFailed` and nothing is written. Handlers only write
(``ctx.write``, ``ctx.put_document``, ``ctx.delete_document``): make each write express the
change (``INSERT ... ON CONFLICT DO UPDATE SET total = total + excluded.total``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from kronika.cqrs.registry import EventRegistry, default_registry
from kronika.domain.events import RecordedEvent
from kronika.errors import ConfigurationError
from kronika.runtime.processor import HANDLES
from kronika.store.inline import InlineWriter, Params

__all__ = ["InlineContext", "InlineProjection"]

InlineHandlerFunction = Callable[[Any, Any, "InlineContext"], None]


class InlineContext:
    """What an inline handler gets besides the event: the stored event and its writes."""

    __slots__ = ("_out", "event")

    def __init__(self, event: RecordedEvent, out: InlineWriter) -> None:
        self.event = event
        """The event as stored: id, stream, version, global position, metadata, time."""
        self._out = out

    def write(self, sql: str, params: Params) -> None:
        """Run a write in the append's transaction (SQLite ``?``/``:name``, PostgreSQL
        ``%s``/``%(name)s`` placeholders); its failure fails the append."""
        self._out.write(sql, params)

    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        """Store (insert or replace) a JSON document, under the plain collection name (read
        it with ``store.processing.documents_reader()``)."""
        self._out.put_document(collection, key, value)

    def delete_document(self, collection: str, key: str) -> None:
        """Remove a document if it exists."""
        self._out.delete_document(collection, key)


class InlineProjection:
    """Base of inline projections: declare ``name``, ``tables`` and/or ``collections``, and
    synchronous ``@on(...)`` handlers ``(self, event, ctx: InlineContext) -> None``.

    Register instances with ``open_store(url, inline=[...])`` in every process that appends.
    """

    name: ClassVar[str] = ""
    """Stable, unique name: the database keeps its record under it."""
    tables: ClassVar[Mapping[str, str]] = {}
    """SQL tables of the read model: name -> ``CREATE TABLE IF NOT EXISTS {table} (...)``,
    created when the store opens and emptied by a rebuild (SQLite and PostgreSQL)."""
    collections: ClassVar[Sequence[str]] = ()
    """Document collections the read model writes (emptied by a rebuild)."""
    events: ClassVar[EventRegistry] = default_registry
    """Where handlers' event classes are registered."""
    _handlers: ClassVar[dict[str, tuple[InlineHandlerFunction, type | None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, tuple[InlineHandlerFunction, type | None]] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                target = getattr(member, HANDLES, None)
                if target is None:
                    continue
                if inspect.iscoroutinefunction(member):
                    raise ConfigurationError(
                        f"{cls.__name__}.{member.__name__}: inline handlers are synchronous "
                        "(they run inside the append's transaction); drop the 'async'"
                    )
                name = target if isinstance(target, str) else cls.events.type_of(target).name
                handlers[name] = (member, target if isinstance(target, type) else None)
        cls._handlers = handlers
        if cls.name and not handlers:
            raise ConfigurationError(f"{cls.__name__} has no @on handlers")

    @property
    def types(self) -> frozenset[str]:
        """The event types this projection handles."""
        return frozenset(self._handlers)

    def apply(self, event: RecordedEvent, out: InlineWriter) -> None:
        """Decode the event if its handler wants a class, and call the handler."""
        handler, cls = self._handlers[event.type]
        payload = self.events.from_recorded(event) if cls is not None else event
        handler(self, payload, InlineContext(event, out))

    def __repr__(self) -> str:
        return f"<inline projection {self.name!r}>"
