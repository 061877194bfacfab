"""Inline projections the inline tests register, importable by subprocesses and ``--app``.

:class:`OrderTotals` keeps one row per order stream (SQL, in the store's database) and a
document with the last event it applied. ``OrderPlaced`` is a registered event class, so its
handler gets it decoded; ``Poisoned`` events make the handler raise; a ``Refunded`` event
larger than the order's total breaks a CHECK constraint (the handler's SQL fails). A refund
of an order without a row changes nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

from kronika import Event, EventRegistry, NewEvent, RecordedEvent
from kronika.runtime import Context, InlineContext, InlineProjection, Reactor, on

registry = EventRegistry()


@registry.event("OrderPlaced")
class OrderPlaced(Event):
    """An order was placed for ``total``."""

    total: int


TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " stream TEXT PRIMARY KEY,"
    " total BIGINT NOT NULL CHECK (total >= 0),"
    " events BIGINT NOT NULL,"
    " last_position BIGINT NOT NULL,"
    " last_version BIGINT NOT NULL)"
)

_UPSERT = (
    "INSERT INTO order_totals (stream, total, events, last_position, last_version) "
    "VALUES (?, ?, 1, ?, ?) ON CONFLICT (stream) DO UPDATE SET "
    "total = order_totals.total + excluded.total, events = order_totals.events + 1, "
    "last_position = excluded.last_position, last_version = excluded.last_version"
)
_REFUND = (
    "UPDATE order_totals SET total = total - ?, events = events + 1, last_position = ?, "
    "last_version = ? WHERE stream = ?"
)


class OrderTotals(InlineProjection):
    """Totals per order stream, in SQL, plus a document per stream."""

    name = "order-totals"
    tables: ClassVar[dict[str, str]] = {"order_totals": TABLE}
    collections = ("orders",)
    events = registry
    slow: ClassVar[float] = 0.0
    """Seconds each handled event sleeps (to make a rebuild take a while)."""

    def __init__(self, placeholder: str = "?") -> None:
        self._upsert = _UPSERT.replace("?", placeholder)
        self._refund = _REFUND.replace("?", placeholder)

    def _pace(self) -> None:
        if self.slow:
            time.sleep(self.slow)

    @on(OrderPlaced)
    def placed(self, event: OrderPlaced, ctx: InlineContext) -> None:
        self._pace()
        stored = ctx.event
        ctx.write(self._upsert, (stored.stream, event.total, stored.position, stored.version))
        ctx.put_document("orders", stored.stream, _document(stored))

    @on("Refunded")
    def refunded(self, event: RecordedEvent, ctx: InlineContext) -> None:
        self._pace()
        amount = int(event.data["amount"])
        ctx.write(self._refund, (amount, event.position, event.version, event.stream))
        ctx.put_document("orders", event.stream, _document(event))

    @on("Poisoned")
    def poisoned(self, event: RecordedEvent, ctx: InlineContext) -> None:
        raise RuntimeError(f"cannot project {event.stream}")


class PostgresOrderTotals(OrderTotals):
    """The same projection with psycopg's placeholders."""

    def __init__(self) -> None:
        super().__init__("%s")


def _document(event: RecordedEvent) -> dict[str, Any]:
    return {
        "version": event.version,
        "position": event.position,
        "id": str(event.id),
        "recorded_at": event.recorded_at.isoformat(),
    }


def placed(total: int) -> NewEvent:
    """A new ``OrderPlaced`` event."""
    return registry.to_new_event(OrderPlaced(total=total))


class Fulfil(Reactor):
    """Places the order an ``OrderRequested`` event asks for (an append from a worker)."""

    name = "fulfil"
    partitions = 1

    @on("OrderRequested")
    async def requested(self, event: RecordedEvent, ctx: Context) -> None:
        follow_up = uuid.uuid5(event.id, "placed")  # the same on a repeat: appended once
        order = NewEvent("OrderPlaced", {"total": event.data["total"]}, id=follow_up)
        await ctx.store.append(event.stream, [order])


SQLITE = [OrderTotals()]
"""``--app tests.runtime.inline_app:SQLITE``."""
POSTGRES = [PostgresOrderTotals()]
"""``--app tests.runtime.inline_app:POSTGRES``."""
WORKER = [Fulfil, OrderTotals()]
"""``kronika worker --app tests.runtime.inline_app:WORKER`` (SQLite): the worker runs the
reactor and registers the inline projection its appends update."""
