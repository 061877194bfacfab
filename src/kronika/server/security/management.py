"""Creating, listing and revoking API keys, and bootstrapping the first admin key.

These are what ``kronika keys`` and the server's start-up call. The store keeps only each
key's hash (see :mod:`.apikeys`); :func:`create_key` returns the one copy of the secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kronika.domain import names
from kronika.errors import ConfigurationError, NotFound, Unauthorized, ValidationError
from kronika.server.principal import Role
from kronika.server.security.apikeys import ParsedKey, generate_key, hash_secret, parse_key
from kronika.store.keys import ApiKeyRecord, KeyStore

__all__ = [
    "BOOTSTRAP_NAME",
    "create_key",
    "ensure_bootstrap_key",
    "key_dict",
    "keys_of",
    "parse_duration",
    "parse_roles",
    "revoke_key",
]

BOOTSTRAP_NAME = "bootstrap-admin"
"""The name given to the admin key stored from ``KRONIKA_BOOTSTRAP_ADMIN_KEY``."""

_DURATION = re.compile(r"^\s*(?P<amount>\d+)\s*(?P<unit>[smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_NAME_LENGTH = 200


def key_dict(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """A key as JSON-ready values: everything stored except the secret's hash (the CLI's
    ``--json`` and the HTTP API); ``status`` is ``active``, ``expired`` or ``revoked``."""

    def stamp(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": record.id,
        "name": record.name,
        "roles": list(record.roles),
        "categories": None if record.categories is None else list(record.categories),
        "status": _status(record, now),
        "created_at": stamp(record.created_at),
        "expires_at": stamp(record.expires_at),
        "revoked_at": stamp(record.revoked_at),
        "last_used_at": stamp(record.last_used_at),
    }


def _status(record: ApiKeyRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "expired" if record.expired(now) else "active"


def keys_of(store: Any) -> KeyStore:
    """The key store of an event store (``store.keys``); ``ConfigurationError`` if none."""
    keys = getattr(store, "keys", None)
    if keys is None:
        engine = getattr(store, "engine", type(store).__name__)
        raise ConfigurationError(f"the {engine} store cannot keep API keys")
    return keys  # type: ignore[no-any-return]


def parse_duration(text: str, field: str = "--expires-in") -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` as a positive :class:`timedelta`."""
    match = _DURATION.match(text)
    if match is None or int(match["amount"]) == 0:
        raise ValidationError(
            f"expected a positive whole number and a unit (s, m, h, d, w), like 90d; got {text!r}",
            field,
        )
    return timedelta(seconds=int(match["amount"]) * _UNITS[match["unit"]])


def parse_roles(values: Iterable[str], field: str = "--role") -> frozenset[Role]:
    """Role names as roles; at least one, each one of reader, writer, operator, admin."""
    roles: set[Role] = set()
    for value in values:
        try:
            roles.add(Role(value.strip().lower()))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValidationError(f"unknown role {value!r}; use one of {known}", field) from None
    if not roles:
        raise ValidationError("give at least one role", field)
    return frozenset(roles)


def _categories(values: Iterable[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    found = {names.check_name(v, "--category", names.MAX_STREAM_LENGTH) for v in values}
    if any("-" in c for c in found):
        raise ValidationError(
            "a category is a stream name's part before the first '-'", "--category"
        )
    return tuple(sorted(found)) or None


def _record(
    key: ParsedKey,
    *,
    roles: frozenset[Role],
    categories: tuple[str, ...] | None,
    name: str,
    created_at: datetime,
    expires_at: datetime | None,
) -> ApiKeyRecord:
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"at most {MAX_NAME_LENGTH} characters", "--name")
    return ApiKeyRecord(
        id=key.id,
        name=name,
        secret_hash=hash_secret(key),
        roles=tuple(sorted(r.value for r in roles)),
        categories=categories,
        created_at=created_at,
        expires_at=expires_at,
    )


async def create_key(
    store: Any,
    roles: Iterable[str],
    *,
    categories: Iterable[str] | None = None,
    name: str = "",
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, ApiKeyRecord]:
    """Create and store a key; returns ``(key, record)``: show the key once, then forget it.

    ``categories`` limits the key to those stream categories (``None`` or empty: all).
    """
    created = now or datetime.now(UTC)
    expires = created + expires_in if expires_in is not None else None
    key = generate_key()
    record = _record(
        key,
        roles=parse_roles(roles),
        categories=_categories(categories),
        name=name,
        created_at=created,
        expires_at=expires,
    )
    if not await keys_of(store).create_key(record):  # 64 random bits: never in practice
        raise ConfigurationError("a key with the generated id exists; try again")
    return key.token, record


async def revoke_key(store: Any, key_id: str, *, now: datetime | None = None) -> ApiKeyRecord:
    """Revoke a key by id (idempotent); ``NotFound`` if there is no such key."""
    found = await keys_of(store).revoke_key(key_id.strip(), now or datetime.now(UTC))
    if found is None:
        raise NotFound(f"no API key with id {key_id!r}")
    return found


async def ensure_bootstrap_key(store: Any, value: str, *, now: datetime | None = None) -> bool:
    """Store ``value`` (a ``kr_...`` key) as an admin key unless its id is stored already.

    Called on every server start with ``KRONIKA_BOOTSTRAP_ADMIN_KEY``: idempotent, and safe
    when several replicas start at once (the insert is conditional in the database). A key
    revoked since is left revoked. Returns True when this call stored it.
    """
    try:
        key = parse_key(value)
    except Unauthorized:  # never echo the value, and say which setting is wrong
        raise ConfigurationError(
            "KRONIKA_BOOTSTRAP_ADMIN_KEY is not a Kronika API key (kr_<id>_<secret>); "
            "generate one with 'kronika keys generate'"
        ) from None
    record = _record(
        key,
        roles=frozenset({Role.ADMIN}),
        categories=None,
        name=BOOTSTRAP_NAME,
        created_at=now or datetime.now(UTC),
        expires_at=None,
    )
    return await keys_of(store).create_key(record)
