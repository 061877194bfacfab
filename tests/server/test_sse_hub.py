"""The broadcast hub behind every live event stream, on a real SQLite store.

Many subscribers share one store subscription (each new event is read once, not once per
subscriber); one that catches up from an old position while events keep coming gets each
event once, in order; a subscriber that stops reading is dropped when its buffer overflows
and the others carry on. The HTTP behaviour (frames, Last-Event-ID, filters) is proved by
test_server_live.py against a real server process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import kronika
from kronika import NewEvent
from kronika.server.hub import Hub, Overflowed
from kronika.server.sse import global_frames, stream_frames


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[kronika.EventStore]:
    async with kronika.open_store(sqlite_url) as store:
        yield store


def ids(frames: list[bytes]) -> list[int]:
    return [int(f.split(b"\n", 1)[0].removeprefix(b"id: ")) for f in frames]


async def collect(frames: AsyncIterator[bytes], count: int) -> list[bytes]:
    got: list[bytes] = []
    async for item in frames:
        got.append(item)
        if len(got) == count:
            break
    return got


async def attached(hub: Hub, count: int) -> None:
    """Until ``count`` subscribers are attached and the hub's subscription runs."""
    for _ in range(1000):
        if hub.subscribers >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(hub.running(), 10)


async def append(store: kronika.EventStore, stream: str, count: int, kind: str = "Tick") -> None:
    for i in range(count):
        await store.append(stream, [NewEvent(kind, {"i": i})])


async def test_fifty_subscribers_share_one_read_of_each_event(store: kronika.EventStore) -> None:
    hub = Hub()
    readers = [
        asyncio.create_task(
            collect(global_frames(store, hub, 1, types=None, categories=None, tags=None), 20)
        )
        for _ in range(50)
    ]
    await attached(hub, 50)
    await append(store, "order-1", 20)
    results = await asyncio.wait_for(asyncio.gather(*readers), 30)
    assert all(ids(r) == list(range(1, 21)) for r in results)
    assert hub.reads == 20, "each event must be read from the store once, not per subscriber"
    assert hub.subscribers == 0
    await hub.close()


async def test_filters_apply_per_subscriber(store: kronika.EventStore) -> None:
    hub = Hub()
    orders = asyncio.create_task(
        collect(global_frames(store, hub, 1, types=None, categories=("order",), tags=None), 3)
    )
    stream = asyncio.create_task(collect(stream_frames(store, hub, "user-7", 0), 2))
    await attached(hub, 2)
    for name in ("order-1", "user-7", "order-2", "user-8", "user-7", "order-1"):
        await append(store, name, 1)
    assert ids(await asyncio.wait_for(orders, 10)) == [1, 3, 6]
    assert ids(await asyncio.wait_for(stream, 10)) == [0, 1]  # versions of user-7
    await hub.close()


@pytest.mark.parametrize("kind", ["global", "stream"])
async def test_live_events_that_overflow_the_last_catch_up_page_are_read_from_the_store(
    store: kronika.EventStore, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # The client is still taking the last (short) page of its catch-up when more live
    # events arrive than its buffer holds: it must read them from the store, not be dropped.
    monkeypatch.setattr("kronika.server.sse.PAGE", 7)
    await append(store, "s-1", 10)
    hub = Hub(buffer_size=2)
    frames = (
        global_frames(store, hub, 1, types=None, categories=None, tags=None)
        if kind == "global"
        else stream_frames(store, hub, "s-1", 0)
    )
    first = 1 if kind == "global" else 0  # positions from 1, versions from 0
    got = [await anext(frames) for _ in range(10)]  # pages of 7 and 3 (short): caught up
    await append(store, "s-1", 5)
    for _ in range(1000):  # until the hub has read them (and overflowed the buffer)
        if hub.reads >= 5:
            break
        await asyncio.sleep(0.01)
    got += [await asyncio.wait_for(anext(frames), 10) for _ in range(5)]
    assert ids(got) == list(range(first, first + 15))
    await append(store, "s-1", 1)  # and it stays live
    assert ids([await asyncio.wait_for(anext(frames), 10)]) == [first + 15]
    await frames.aclose()
    await hub.close()


async def test_catch_up_from_an_old_position_meets_the_live_tail(
    store: kronika.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kronika.server.sse.PAGE", 7)  # several pages of catch-up
    await append(store, "old-1", 40)
    hub = Hub(buffer_size=4)  # overflows while catching up: it must read on from the store
    live = asyncio.create_task(
        collect(global_frames(store, hub, 1, types=None, categories=None, tags=None), 80)
    )
    await append(store, "new-1", 40)
    assert ids(await asyncio.wait_for(live, 30)) == list(range(1, 81))
    await hub.close()


async def test_a_subscriber_that_stops_reading_is_dropped_not_waited_for(
    store: kronika.EventStore,
) -> None:
    hub = Hub(buffer_size=5)
    slow = await hub.attach(store, lambda event: True)
    fast = asyncio.create_task(
        collect(global_frames(store, hub, 1, types=None, categories=None, tags=None), 12)
    )
    await attached(hub, 2)
    await append(store, "order-1", 12)
    assert ids(await asyncio.wait_for(fast, 10)) == list(range(1, 13))
    assert slow.overflowed
    with pytest.raises(Overflowed):
        await slow.get()
    await hub.close()


async def test_the_hub_stops_its_subscription_when_the_last_subscriber_leaves(
    store: kronika.EventStore,
) -> None:
    hub = Hub()
    one = await hub.attach(store, lambda event: True)
    await append(store, "order-1", 1)
    assert (await asyncio.wait_for(one.get(), 10)) is not None
    hub.detach(one)
    await asyncio.sleep(0.05)
    await append(store, "order-1", 3)
    await asyncio.sleep(0.2)
    assert hub.reads == 1
    again = asyncio.create_task(
        collect(global_frames(store, hub, 1, types=None, categories=None, tags=None), 4)
    )
    assert ids(await asyncio.wait_for(again, 10)) == [1, 2, 3, 4]
    await hub.close()
