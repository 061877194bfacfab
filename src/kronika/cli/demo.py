"""``kronika demo``: a small order flow appended, read back and shown, as a first look."""

from __future__ import annotations

import uuid

import typer

from kronika.cli import output
from kronika.cli.context import settings_of, with_store
from kronika.domain.events import NO_STREAM, NewEvent, RecordedEvent, StreamAppend
from kronika.store import EventStore

__all__ = ["demo"]


CUSTOMER_TAG = "customer:c-7"
"""The demo's events carry this tag: the key a consistency boundary or a filter can use."""


def _order_placed() -> list[NewEvent]:
    tags = (CUSTOMER_TAG,)
    return [
        NewEvent("OrderPlaced", {"customer": "c-7"}, tags=tags),
        NewEvent("ItemAdded", {"sku": "TEA-01", "qty": 2}, tags=tags),
        NewEvent("ItemAdded", {"sku": "MUG-07", "qty": 1}, tags=tags),
    ]


def _paid_and_shipped(order: str) -> list[StreamAppend]:
    """Pay and ship in one atomic append to two streams, each with its expected version."""
    tags = (CUSTOMER_TAG,)
    paid = NewEvent("OrderPaid", {"amount": 18.0}, tags=tags)
    shipped = NewEvent("OrderShipped", {"carrier": "post"}, tags=tags)
    payment = NewEvent("PaymentReceived", {"order": order, "amount": 18.0}, tags=tags)
    return [
        StreamAppend(f"order-{order}", [paid, shipped], expected_version=2),
        StreamAppend(f"payment-{order}", [payment], expected_version=NO_STREAM),
    ]


async def _run_demo(store: EventStore, order: str) -> list[RecordedEvent]:
    await store.append(f"order-{order}", _order_placed(), expected_version=NO_STREAM)
    await store.append_multi(_paid_and_shipped(order))
    events = await store.read_stream(f"order-{order}")
    events += await store.read_stream(f"payment-{order}")
    return sorted(events, key=lambda event: event.position)


def demo(ctx: typer.Context) -> None:
    """Append a small order flow to the configured store, read it back and show it."""
    order = uuid.uuid4().hex[:8]
    events = with_store(ctx, lambda store: _run_demo(store, order))
    where = settings_of(ctx).shown_url
    output.out.print(output.events_table(events, title=f"order {order} in {where}"))
    output.out.print(
        f"\nNext: kronika streams read order-{order}   |   kronika events read --category order",
        markup=False,
    )
