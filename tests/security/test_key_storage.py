"""``store.keys`` on every backend: create, look up, list, revoke, touch (the KeyStore protocol)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from kronika import open_store
from kronika.store.keys import ApiKeyRecord

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _record(key_id: str, **changes: object) -> ApiKeyRecord:
    fields: dict[str, object] = {
        "id": key_id,
        "name": f"name-{key_id}",
        "secret_hash": bytes(range(32)),
        "roles": ("reader", "writer"),
        "categories": None,
        "created_at": T0,
        **changes,
    }
    return ApiKeyRecord(**fields)  # type: ignore[arg-type]


async def test_a_key_round_trips_with_every_field(any_url: str) -> None:
    record = _record(
        "a1", categories=("orders", "users"), expires_at=T0 + timedelta(days=90), name=""
    )
    async with open_store(any_url) as store:
        assert await store.keys.create_key(record) is True
        assert await store.keys.key("a1") == record
        assert await store.keys.key("missing") is None


async def test_creating_an_existing_id_changes_nothing(any_url: str) -> None:
    async with open_store(any_url) as store:
        assert await store.keys.create_key(_record("k1"))
        assert await store.keys.create_key(_record("k1", roles=("admin",))) is False
        stored = await store.keys.key("k1")
        assert stored is not None
        assert stored.roles == ("reader", "writer")


async def test_concurrent_creates_of_one_id_store_it_once(any_url: str) -> None:
    stores = [open_store(any_url) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        results = await asyncio.gather(*(s.keys.create_key(_record("boot")) for s in stores))
        assert sorted(results) == [False, False, True]
    finally:
        for store in stores:
            await store.close()


async def test_keys_are_listed_oldest_first(any_url: str) -> None:
    async with open_store(any_url) as store:
        await store.keys.create_key(_record("b", created_at=T0 + timedelta(seconds=2)))
        await store.keys.create_key(_record("a", created_at=T0 + timedelta(seconds=1)))
        await store.keys.create_key(_record("c", created_at=T0 + timedelta(seconds=3)))
        assert [k.id for k in await store.keys.keys()] == ["a", "b", "c"]


async def test_revoke_keeps_the_first_time(any_url: str) -> None:
    async with open_store(any_url) as store:
        await store.keys.create_key(_record("r"))
        first = await store.keys.revoke_key("r", T0 + timedelta(hours=1))
        assert first is not None
        assert first.revoked_at == T0 + timedelta(hours=1)
        again = await store.keys.revoke_key("r", T0 + timedelta(hours=2))
        assert again is not None
        assert again.revoked_at == T0 + timedelta(hours=1)
        assert await store.keys.revoke_key("nope", T0) is None


async def test_touch_writes_at_most_once_per_period(any_url: str) -> None:
    minute = timedelta(minutes=1)
    async with open_store(any_url) as store:
        await store.keys.create_key(_record("t"))
        at = T0 + timedelta(hours=1)
        await store.keys.touch_key("t", at, stale_before=at - minute)
        later = at + timedelta(seconds=30)
        await store.keys.touch_key("t", later, stale_before=later - minute)
        stored = await store.keys.key("t")
        assert stored is not None
        assert stored.last_used_at == at
        much_later = at + timedelta(minutes=5)
        await store.keys.touch_key("t", much_later, stale_before=much_later - minute)
        stored = await store.keys.key("t")
        assert stored is not None
        assert stored.last_used_at == much_later
        await store.keys.touch_key("missing", at, stale_before=at)  # no error


async def test_keys_belong_to_a_namespace(any_url: str) -> None:
    separator = "&" if "?" in any_url else "?"
    async with (
        open_store(any_url) as default,
        open_store(f"{any_url}{separator}namespace=other") as other,
    ):
        await default.keys.create_key(_record("ns"))
        assert await other.keys.key("ns") is None
        assert await other.keys.keys() == []


async def test_keys_survive_reopening(any_url: str) -> None:
    async with open_store(any_url) as store:
        await store.keys.create_key(_record("durable"))
    async with open_store(any_url) as store:
        assert [k.id for k in await store.keys.keys()] == ["durable"]
