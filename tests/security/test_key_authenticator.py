"""KeyAuthenticator against real stores: valid, unknown, wrong secret, revoked, expired,
malformed; the lookup cache and its bound on how long a revoke takes; last_used_at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from kronika import open_store
from kronika.errors import ConfigurationError, Unauthorized
from kronika.server.principal import Role
from kronika.server.security import KeyAuthenticator, create_key, revoke_key
from kronika.server.security.apikeys import generate_key
from kronika.store.protocol import EventStore


class FakeClock:
    """Monotonic seconds and wall time that only move when a test says so."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self.wall = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
async def store(any_url: str) -> AsyncIterator[EventStore]:
    async with open_store(any_url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def authenticator(store: EventStore, clock: FakeClock, ttl: float = 5.0) -> KeyAuthenticator:
    return KeyAuthenticator(store, cache_ttl=ttl, clock=clock.monotonic, now=clock.now)


async def test_a_valid_key_gives_its_principal(store: EventStore, clock: FakeClock) -> None:
    token, record = await create_key(
        store, ["writer", "reader"], categories=["orders"], name="ci", now=clock.now()
    )
    principal = await authenticator(store, clock).authenticate(f"Bearer {token}")
    assert principal.name == record.id
    assert principal.roles == {Role.WRITER, Role.READER}
    assert principal.categories == {"orders"}
    assert principal.kind == "key"
    unlimited, _ = await create_key(store, ["admin"], now=clock.now())
    principal = await authenticator(store, clock).authenticate(f"bearer  {unlimited} ")
    assert principal.categories is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credentials"),
        ("", "missing credentials"),
        ("Bearer ", "missing credentials"),
        ("Basic dXNlcjpwYXNz", "unsupported authorization scheme"),
        ("Bearer kr_nope", "malformed API key"),
    ],
)
async def test_bad_headers_say_what_is_wrong(
    store: EventStore, clock: FakeClock, header: str | None, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message):
        await authenticator(store, clock).authenticate(header)


async def test_unknown_keys_and_wrong_secrets_read_alike(
    store: EventStore, clock: FakeClock
) -> None:
    token, record = await create_key(store, ["reader"], now=clock.now())
    auth = authenticator(store, clock)
    stranger = generate_key()
    with pytest.raises(Unauthorized, match=f"unknown API key {stranger.id}"):
        await auth.authenticate(f"Bearer {stranger.token}")
    wrong = f"kr_{record.id}_{stranger.secret}"
    with pytest.raises(Unauthorized, match=f"unknown API key {record.id}") as caught:
        await auth.authenticate(f"Bearer {wrong}")
    assert stranger.secret not in str(caught.value)
    assert token.split("_", 2)[2] not in str(caught.value)


async def test_an_expired_key_is_refused(store: EventStore, clock: FakeClock) -> None:
    token, record = await create_key(
        store, ["reader"], expires_in=timedelta(hours=1), now=clock.now()
    )
    auth = authenticator(store, clock)
    await auth.authenticate(f"Bearer {token}")
    clock.advance(3599)
    await auth.authenticate(f"Bearer {token}")
    clock.advance(1)
    with pytest.raises(Unauthorized, match=f"API key {record.id} expired at"):
        await auth.authenticate(f"Bearer {token}")


async def test_a_revoke_takes_effect_within_the_cache_time(
    store: EventStore, clock: FakeClock
) -> None:
    token, record = await create_key(store, ["reader"], now=clock.now())
    auth = authenticator(store, clock, ttl=5.0)
    await auth.authenticate(f"Bearer {token}")
    await revoke_key(store, record.id, now=clock.now())
    clock.advance(4.9)
    await auth.authenticate(f"Bearer {token}")  # still cached: the documented bound
    clock.advance(0.1)
    with pytest.raises(Unauthorized, match=f"API key {record.id} was revoked"):
        await auth.authenticate(f"Bearer {token}")
    # a fresh authenticator (another replica) sees the revoke at once
    with pytest.raises(Unauthorized, match="was revoked"):
        await authenticator(store, clock).authenticate(f"Bearer {token}")


async def test_without_a_cache_a_revoke_is_immediate(store: EventStore, clock: FakeClock) -> None:
    token, record = await create_key(store, ["reader"], now=clock.now())
    auth = authenticator(store, clock, ttl=0)
    await auth.authenticate(f"Bearer {token}")
    await revoke_key(store, record.id, now=clock.now())
    with pytest.raises(Unauthorized, match="was revoked"):
        await auth.authenticate(f"Bearer {token}")


async def test_the_cache_spares_the_database(store: EventStore, clock: FakeClock) -> None:
    token, _ = await create_key(store, ["reader"], now=clock.now())
    calls = 0
    keys = store.keys  # type: ignore[attr-defined]
    original = keys.key

    async def counting(key_id: str) -> object:
        nonlocal calls
        calls += 1
        return await original(key_id)

    keys.key = counting
    try:
        auth = authenticator(store, clock)
        for _ in range(50):
            await auth.authenticate(f"Bearer {token}")
        stranger = generate_key().token
        for _ in range(50):
            with pytest.raises(Unauthorized):
                await auth.authenticate(f"Bearer {stranger}")
        assert calls == 2
        clock.advance(5)
        await auth.authenticate(f"Bearer {token}")
        assert calls == 3
    finally:
        del keys.key


async def test_the_cache_is_bounded(store: EventStore, clock: FakeClock) -> None:
    auth = KeyAuthenticator(store, cache_size=3, clock=clock.monotonic, now=clock.now)
    for _ in range(10):
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {generate_key().token}")
    assert len(auth._cache._entries) == 3


async def test_last_used_is_recorded_at_most_once_a_minute(
    store: EventStore, clock: FakeClock
) -> None:
    token, record = await create_key(store, ["reader"], now=clock.now())
    first_use = clock.now()
    auth = authenticator(store, clock)
    await auth.authenticate(f"Bearer {token}")
    for _ in range(5):
        clock.advance(10)
        await auth.authenticate(f"Bearer {token}")
    stored = await store.keys.key(record.id)  # type: ignore[attr-defined]
    assert stored.last_used_at == first_use
    clock.advance(11)  # over a minute after the first use
    await auth.authenticate(f"Bearer {token}")
    stored = await store.keys.key(record.id)  # type: ignore[attr-defined]
    assert stored.last_used_at == clock.now()


async def test_a_store_without_keys_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot keep API keys"):
        KeyAuthenticator(object())
