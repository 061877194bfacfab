"""The API key format: generation, parsing and hashing (no I/O)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest

from kronika.errors import Unauthorized, ValidationError
from kronika.server.principal import Role
from kronika.server.security.apikeys import (
    generate_key,
    hash_secret,
    parse_key,
    verify_secret,
)
from kronika.server.security.management import parse_duration, parse_roles


def test_a_generated_key_has_the_documented_shape_and_256_secret_bits() -> None:
    key = generate_key()
    assert re.fullmatch(r"kr_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key.token)
    assert len(key.secret) * 6 >= 256  # 43 base64url characters carry 258 bits
    assert parse_key(key.token) == key


def test_keys_do_not_repeat() -> None:
    tokens = {generate_key().token for _ in range(1000)}
    ids = {t.split("_")[1] for t in tokens}
    assert len(tokens) == len(ids) == 1000


def test_the_secret_never_shows_in_repr() -> None:
    key = generate_key()
    assert key.secret not in repr(key)
    assert key.id in repr(key)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "kr_",
        "kr_abc_def",
        "kr_0123456789abcdef",
        "kr_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "kr_0123456789abcdef_" + "a" * 42,  # short secret
        "kr_0123456789abcdef_" + "a" * 44,
        "kr_0123456789abcdef_" + "a" * 42 + "!",
        "xx_0123456789abcdef_" + "a" * 43,
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(token: str) -> None:
    with pytest.raises(Unauthorized, match="malformed API key") as caught:
        parse_key(token)
    if len(token) > 12:  # long enough not to be part of the message's own example
        assert token not in str(caught.value)


def test_the_hash_is_sha256_bound_to_the_id() -> None:
    key = generate_key()
    digest = hash_secret(key)
    assert len(digest) == 32
    assert digest != hashlib.sha256(key.secret.encode()).digest()  # domain-separated
    assert verify_secret(key, digest)
    other = generate_key()
    assert not verify_secret(other, digest)
    swapped = parse_key(f"kr_{other.id}_{key.secret}")
    assert not verify_secret(swapped, digest)  # the same secret under another id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1y", "d", "1.5d", "90 days"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(ValidationError, match="--expires-in"):
        parse_duration(text)


def test_roles_parse_by_name_and_refuse_unknown_ones() -> None:
    assert parse_roles(["writer", "Reader"]) == {Role.WRITER, Role.READER}
    with pytest.raises(ValidationError, match="unknown role 'root'"):
        parse_roles(["root"])
    with pytest.raises(ValidationError, match="at least one role"):
        parse_roles([])
