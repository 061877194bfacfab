"""Sagas on every backend: state per correlation, commands sent exactly once even when a
handler is run again, compensation in reverse order, and instances that end (K7, C6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_runtime import BACKENDS, wait_for

import kronika
from kronika import NewEvent, RecordedEvent, RetryPolicy, caused_by
from kronika.runtime import Saga, SagaContext, Worker, admin, on
from kronika.runtime.saga import on_timeout
from kronika.store.protocol import EventStore

crash_once: set[str] = set()
"""Orders whose first handling crashes after the commands were sent (then succeeds)."""


class Checkout(Saga):
    name = "checkout"
    partitions = 2
    retry = RetryPolicy(max_attempts=5, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("OrderPlaced")
    async def placed(self, event: RecordedEvent, saga: SagaContext) -> None:
        order = event.data["order"]
        saga.state.update(order=order, placed_version=event.version)
        await saga.send(f"stock-{order}", NewEvent("StockReserved", {"order": order}))
        saga.step(
            "reserve", compensate=(f"stock-{order}", NewEvent("StockReleased", {"order": order}))
        )
        await saga.send(f"payment-{order}", NewEvent("PaymentCharged", {"order": order}))
        saga.step(
            "charge", compensate=(f"payment-{order}", NewEvent("PaymentRefunded", {"order": order}))
        )
        saga.step("notify")  # nothing to undo
        if order in crash_once:
            crash_once.discard(order)
            raise RuntimeError("crashed after sending the commands")

    @on("ShippingFailed")
    async def shipping_failed(self, event: RecordedEvent, saga: SagaContext) -> None:
        await saga.compensate(f"shipping failed: {event.data['why']}")

    @on("OrderShipped")
    async def shipped(self, event: RecordedEvent, saga: SagaContext) -> None:
        saga.state["shipped"] = True
        saga.complete()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        worker = Worker(opened, [Checkout()], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            yield opened
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)


async def place(store: EventStore, order: str) -> str:
    """Place an order; its correlation id (the order event's id) keys the saga instance."""
    result = await store.append(f"order-{order}", [NewEvent("OrderPlaced", {"order": order})])
    [event] = await store.read_all(from_position=result.position, limit=1)
    return str(event.id)


async def reply(store: EventStore, correlation: str, stream: str, event: NewEvent) -> None:
    """Another service answers within the same conversation."""
    with caused_by("reply", correlation):
        await store.append(stream, [event])


async def types_of(store: EventStore, stream: str) -> list[str]:
    return [e.type for e in await store.read_stream(stream)]


async def test_a_saga_sends_commands_once_and_compensates_in_reverse_order(
    store: EventStore,
) -> None:
    crash_once.add("o-1")
    correlation = await place(store, "o-1")

    async def sent() -> bool:
        return await types_of(store, "payment-o-1") == ["PaymentCharged"]

    await wait_for(sent, timeout=20)
    instance = await Checkout().instance(store, correlation)

    async def saved() -> bool:
        found = await Checkout().instance(store, correlation)
        return found is not None and found["state"].get("order") == "o-1"

    await wait_for(saved, timeout=20)
    instance = await Checkout().instance(store, correlation)
    assert instance is not None
    assert [s["name"] for s in instance["steps"]] == ["reserve", "charge", "notify"]
    # The first run crashed after sending: the rerun appended nothing twice.
    assert await types_of(store, "stock-o-1") == ["StockReserved"]

    await reply(store, correlation, "shipping-o-1", NewEvent("ShippingFailed", {"why": "lost"}))

    async def compensated() -> bool:
        found = await Checkout().instance(store, correlation)
        return found is not None and found["status"] == "compensated"

    await wait_for(compensated, timeout=20)
    assert await types_of(store, "payment-o-1") == ["PaymentCharged", "PaymentRefunded"]
    assert await types_of(store, "stock-o-1") == ["StockReserved", "StockReleased"]
    refund = (await store.read_stream("payment-o-1"))[-1]
    release = (await store.read_stream("stock-o-1"))[-1]
    assert refund.position < release.position  # newest step undone first
    assert refund.metadata["correlation_id"] == correlation


async def test_a_completed_saga_ignores_later_events(store: EventStore) -> None:
    correlation = await place(store, "o-2")
    await reply(store, correlation, "shipping-o-2", NewEvent("OrderShipped", {}))

    async def completed() -> bool:
        found = await Checkout().instance(store, correlation)
        return found is not None and found["status"] == "completed"

    await wait_for(completed, timeout=20)
    await reply(store, correlation, "shipping-o-2", NewEvent("ShippingFailed", {"why": "late"}))

    async def handled() -> bool:
        return (await admin.status(store, Checkout())).lag_events == 0

    await wait_for(handled, timeout=20)  # the late event was handled, and changed nothing
    assert await types_of(store, "payment-o-2") == ["PaymentCharged"]  # no refund
    found = await Checkout().instance(store, correlation)
    assert found is not None
    assert found["state"]["shipped"] is True


class Booking(Saga):
    """Holds a seat and gives it back if payment does not arrive in time."""

    name = "booking"
    partitions = 2

    @on("SeatHeld")
    async def held(self, event: RecordedEvent, saga: SagaContext) -> None:
        saga.step("hold", compensate=(event.stream, NewEvent("SeatReleased", {})))
        saga.schedule("payment", after=event.data["wait"])

    @on("PaymentReceived")
    async def paid(self, event: RecordedEvent, saga: SagaContext) -> None:
        saga.cancel("payment")
        saga.complete()

    @on_timeout("payment")
    async def payment_late(self, saga: SagaContext) -> None:
        await saga.compensate("payment timed out")


@pytest.fixture(params=BACKENDS)
async def booking_store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        worker = Worker(opened, [Booking()], lease_ttl=0.6, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            yield opened
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)


async def test_a_timeout_fires_once_and_a_cancelled_one_never(booking_store: EventStore) -> None:
    store = booking_store
    late = await store.append("seat-1", [NewEvent("SeatHeld", {"wait": 0.3})])
    [held_late] = await store.read_all(from_position=late.position, limit=1)
    paid = await store.append("seat-2", [NewEvent("SeatHeld", {"wait": 1.5})])
    [held_paid] = await store.read_all(from_position=paid.position, limit=1)
    await reply(store, str(held_paid.id), "payment-2", NewEvent("PaymentReceived", {}))

    async def released() -> bool:
        found = await Booking().instance(store, str(held_late.id))
        return found is not None and found["status"] == "compensated"

    await wait_for(released, timeout=20)
    found = await Booking().instance(store, str(held_late.id))
    assert found is not None
    assert (found["status"], found["deadlines"]) == ("compensated", {})
    await asyncio.sleep(2.5)  # past the cancelled deadline, and more timer rounds
    assert await types_of(store, "seat-2") == ["SeatHeld"]  # paid in time: nothing released
    assert await types_of(store, "seat-1") == ["SeatHeld", "SeatReleased"]  # fired once
    timeouts = await store.read_stream("sagatimeouts-booking")
    assert [e.data["key"] for e in timeouts] == [str(held_late.id)]
