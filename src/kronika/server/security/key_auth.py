"""Authenticating ``Bearer kr_...`` API keys against ``store.keys``, with a short cache.

Every request carries its key, so looking each one up in the database would put a query
in front of every request. Lookups are cached per key id for ``cache_ttl`` seconds
(default 5) in a bounded LRU (default 10,000 ids), unknown ids included, so garbage keys
cannot flood the database either. The cache holds the stored record, never a verdict:
the secret's hash, expiry and revocation are checked on every request. Hence a revoke
(or a newly created key) takes effect on every replica within ``cache_ttl`` seconds.

``last_used_at`` is written at most once a minute per key (and the database skips the
write when another replica has just made it), never on the request's critical path more
often than that. A failed write never fails the request.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kronika.errors import KronikaError, Unauthorized
from kronika.server.principal import Principal, Role
from kronika.server.security.apikeys import ParsedKey, parse_key, verify_secret
from kronika.server.security.bearer import bearer_token
from kronika.server.security.management import keys_of
from kronika.store.keys import ApiKeyRecord, KeyStore

__all__ = ["KeyAuthenticator"]

TOUCH_PERIOD = timedelta(minutes=1)
"""``last_used_at`` is recorded at most this often per key."""


class _Cache:
    """A bounded LRU of key id -> (stored record or None, when it was fetched)."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[ApiKeyRecord | None, float]] = OrderedDict()

    def get(self, key_id: str) -> tuple[bool, ApiKeyRecord | None]:
        """``(True, record)`` for a fresh entry, else ``(False, None)``."""
        entry = self._entries.get(key_id)
        if entry is None or self._clock() - entry[1] >= self._ttl:
            return False, None
        self._entries.move_to_end(key_id)
        return True, entry[0]

    def put(self, key_id: str, record: ApiKeyRecord | None) -> None:
        self._entries[key_id] = (record, self._clock())
        self._entries.move_to_end(key_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        self._entries.pop(key_id, None)


class KeyAuthenticator:
    """Turns ``Authorization: Bearer kr_<id>_<secret>`` into the key's principal.

    ``store`` is an event store with ``store.keys`` (memory, SQLite, PostgreSQL) or a
    :class:`~kronika.store.keys.KeyStore` itself. ``cache_ttl`` bounds how long a revoke
    takes to be noticed; 0 turns the cache off.
    """

    def __init__(
        self,
        store: object,
        *,
        cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys: KeyStore = store if _is_key_store(store) else keys_of(store)  # type: ignore[assignment]
        self._cache = _Cache(cache_ttl, cache_size, clock)
        self._now = now
        self._touched: dict[str, datetime] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        """The key's principal; ``Unauthorized`` saying what is wrong (never the secret)."""
        return await self.authenticate_token(bearer_token(authorization))

    async def authenticate_token(self, token: str) -> Principal:
        """The principal of a bare ``kr_...`` key."""
        key = parse_key(token)
        record = await self._lookup(key.id)
        now = self._now()
        _check(key, record, now)
        assert record is not None  # _check raised otherwise
        await self._touch(record, now)
        return Principal(
            name=record.id,
            roles=frozenset(Role(r) for r in record.roles if r in _ROLE_NAMES),
            categories=None if record.categories is None else frozenset(record.categories),
            kind="key",
        )

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        fresh, record = self._cache.get(key_id)
        if not fresh:
            record = await self._keys.key(key_id)
            self._cache.put(key_id, record)
        return record

    async def _touch(self, record: ApiKeyRecord, now: datetime) -> None:
        last = self._touched.get(record.id) or record.last_used_at
        if last is not None and now - last <= TOUCH_PERIOD:  # as the store decides
            return
        if len(self._touched) >= 100_000:  # bounded like the cache; forgetting costs a write
            self._touched.clear()
        self._touched[record.id] = now
        with contextlib.suppress(KronikaError):  # bookkeeping must not fail a valid request
            await self._keys.touch_key(record.id, now, stale_before=now - TOUCH_PERIOD)


_ROLE_NAMES = frozenset(r.value for r in Role)
_TIME = "%Y-%m-%d %H:%M:%S"


def _is_key_store(value: object) -> bool:
    return all(hasattr(value, m) for m in ("create_key", "key", "revoke_key", "touch_key"))


def _check(key: ParsedKey, record: ApiKeyRecord | None, now: datetime) -> None:
    """Raise ``Unauthorized`` unless ``record`` is the live key ``key`` names.

    A wrong secret reads as an unknown key, so the answer does not tell a guesser which
    ids exist; only the key's holder learns that it was revoked or has expired.
    """
    if record is None or not verify_secret(key, record.secret_hash):
        raise Unauthorized(f"unknown API key {key.id}")
    if record.revoked_at is not None:
        raise Unauthorized(
            f"API key {key.id} was revoked at {record.revoked_at:%Y-%m-%d %H:%M} UTC"
        )
    if record.expired(now):
        assert record.expires_at is not None
        raise Unauthorized(f"API key {key.id} expired at {record.expires_at:{_TIME}} UTC")
