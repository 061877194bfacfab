"""Options of the PostgreSQL backend and the pure helpers behind appends (no server needed)."""

from __future__ import annotations

import pytest

from kronika.errors import ConfigurationError, ValidationError
from kronika.store.postgres import PostgresEventStore
from kronika.store.postgres.appends import MAX_SHARED_KEYS, lock_key
from kronika.store.postgres.notifier import channel_name
from kronika.store.postgres.settings import parse_url


def test_defaults() -> None:
    settings = parse_url("postgresql://u@db/app", {})
    assert (settings.namespace, settings.schema, settings.migrate) == ("default", "kronika", True)
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 10)
    assert (settings.pool_timeout, settings.pool_max_idle) == (10.0, 300.0)
    assert settings.statement_timeout is None
    assert settings.poll_interval == 1.0


def test_url_options_are_typed_and_keywords_win() -> None:
    url = "postgres://u:p@db:6543/app?schema=es&migrate=false&pool_max_size=20&sslmode=require"
    settings = parse_url(url, {"pool_max_size": 30, "namespace": "tenant-1"})
    assert settings.schema == "es"
    assert settings.migrate is False
    assert settings.pool_max_size == 30
    assert settings.namespace == "tenant-1"
    assert settings.conninfo == "postgresql://u:p@db:6543/app?sslmode=require"


def test_libpq_parameters_pass_through() -> None:
    url = "postgresql+psycopg://db/app?connect_timeout=3&application_name=api&sslrootcert=/ca"
    settings = parse_url(url, {})
    assert settings.conninfo.startswith("postgresql://db/app?")
    for kept in ("connect_timeout=3", "application_name=api", "sslrootcert=%2Fca"):
        assert kept in settings.conninfo
    assert settings.application_name_given


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("postgresql://db/app?colour=red", {}, "unknown store option 'colour'"),
        ("postgresql://db/app", {"schema": "bad-name"}, "not a plain identifier"),
        ("postgresql://db/app", {"schema": "x" * 64}, "not a plain identifier"),
        ("postgresql://db/app?pool_min_size=5&pool_max_size=2", {}, "exceeds"),
        ("postgresql://db/app?pool_timeout=0", {}, "must be > 0"),
        ("postgresql://db/app?migrate=perhaps", {}, "expected a boolean"),
        ("mysql://db/app", {}, "postgresql://"),
    ],
)
def test_bad_options_are_configuration_errors(
    url: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_url(url, options)


def test_a_bad_namespace_is_rejected() -> None:
    with pytest.raises(ValidationError, match="namespace"):
        PostgresEventStore("postgresql://db/app", namespace="no spaces")


def test_lock_keys_are_stable_64_bit_and_distinct() -> None:
    key = lock_key("kronika\x00default", "stream", "order-1")
    assert key == lock_key("kronika\x00default", "stream", "order-1")
    assert -(2**63) <= key < 2**63
    others = {
        lock_key("kronika\x00other", "stream", "order-1"),
        lock_key("kronika\x00default", "type", "order-1"),
        lock_key("kronika\x00default", "stream", "order-2"),
    }
    assert key not in others
    assert MAX_SHARED_KEYS >= 16


def test_channel_names_fit_in_an_identifier() -> None:
    assert channel_name("kronika", "default") == "kronika.kronika.default"
    long = channel_name("s" * 63, "n" * 63)
    assert len(long.encode()) <= 63
    assert long != channel_name("s" * 63, "m" * 63)


def test_spaces_in_libpq_values_stay_spaces() -> None:
    settings = parse_url("postgresql://db/app?options=-c%20search_path%3Dx", {})
    assert settings.conninfo == "postgresql://db/app?options=-c%20search_path%3Dx"
