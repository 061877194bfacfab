"""AuthSettings from the environment, build_authenticator, the chain, and bootstrapping
the first admin key (idempotent, concurrent replicas)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest

from kronika import open_store
from kronika.errors import ConfigurationError, Unauthorized
from kronika.server.principal import ANONYMOUS_ADMIN, AllowAll, Role
from kronika.server.security import (
    AuthSettings,
    ChainAuthenticator,
    build_authenticator,
    create_key,
    ensure_bootstrap_key,
    generate_key,
    revoke_key,
    start_authentication,
)
from kronika.server.security.settings import ENVIRONMENT

SECRET = "0123456789abcdef0123456789abcdef"
JWT_ENV = {
    "KRONIKA_AUTH_ENABLED": "true",
    "KRONIKA_JWT_SECRET": SECRET,
    "KRONIKA_JWT_ISSUER": "iss",
    "KRONIKA_JWT_AUDIENCE": "aud",
}


def token(**changes: object) -> str:
    now = int(time.time())
    claims = {"sub": "bob", "iss": "iss", "aud": "aud", "exp": now + 60, "roles": ["reader"]}
    claims.update(changes)
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_defaults_leave_authentication_off() -> None:
    settings = AuthSettings.from_env({})
    assert settings.enabled is False
    assert settings.key_cache_ttl == 5.0
    assert settings.jwt_leeway == 30.0
    assert settings.production_problems() == [
        "authentication is off: set KRONIKA_AUTH_ENABLED=true"
    ]


def test_every_setting_is_read_from_its_variable(tmp_path: Path) -> None:
    key = generate_key().token
    secret_file = tmp_path / "jwt"
    secret_file.write_text(f"  {SECRET}\n")
    settings = AuthSettings.from_env(
        {
            "KRONIKA_AUTH_ENABLED": "1",
            "KRONIKA_AUTH_KEY_CACHE_TTL": "2.5",
            "KRONIKA_JWT_SECRET_FILE": str(secret_file),
            "KRONIKA_JWT_ALGORITHMS": "HS256",
            "KRONIKA_JWT_ISSUER": "iss",
            "KRONIKA_JWT_AUDIENCE": "aud",
            "KRONIKA_JWT_LEEWAY": "10",
            "KRONIKA_JWT_ROLES_CLAIM": "groups",
            "KRONIKA_JWT_CATEGORIES_CLAIM": "cats",
            "KRONIKA_BOOTSTRAP_ADMIN_KEY": key,
        }
    )
    assert settings.enabled
    assert settings.key_cache_ttl == 2.5
    assert settings.resolved_jwt_secret() == SECRET
    assert settings.jwt_algorithms == ("HS256",)
    assert (settings.jwt_leeway, settings.roles_claim, settings.categories_claim) == (
        10,
        "groups",
        "cats",
    )
    assert settings.resolved_bootstrap_key() == key
    assert key not in repr(settings)
    assert set(ENVIRONMENT) == set(AuthSettings.model_fields)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KRONIKA_JWT_LEEWAY": "301"}, "KRONIKA_JWT_LEEWAY"),
        ({"KRONIKA_AUTH_ENABLED": "maybe"}, "KRONIKA_AUTH_ENABLED"),
        ({"KRONIKA_JWT_SECRET": SECRET}, "KRONIKA_JWT_ISSUER and KRONIKA_JWT_AUDIENCE"),
        (
            {**JWT_ENV, "KRONIKA_JWT_JWKS_URL": "http://idp/jwks"},
            "a JWT secret .* or a JWKS URL",
        ),
        ({**JWT_ENV, "KRONIKA_JWT_SECRET_FILE": "/x"}, "not both"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AuthSettings.from_env(env)


def test_an_unreadable_secret_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = AuthSettings.from_env(
        {**JWT_ENV, "KRONIKA_JWT_SECRET": "", "KRONIKA_JWT_SECRET_FILE": str(tmp_path / "none")}
    )
    with pytest.raises(ConfigurationError, match="KRONIKA_JWT_SECRET_FILE: cannot read"):
        settings.resolved_jwt_secret()


async def test_auth_off_builds_allow_all(memory_url: str) -> None:
    async with open_store(memory_url) as store:
        authenticator = build_authenticator(store, AuthSettings())
        assert isinstance(authenticator, AllowAll)
        assert await authenticator.authenticate(None) == ANONYMOUS_ADMIN


async def test_a_short_jwt_secret_fails_at_build_time(memory_url: str) -> None:
    settings = AuthSettings.from_env({**JWT_ENV, "KRONIKA_JWT_SECRET": "short"})
    async with open_store(memory_url) as store:
        with pytest.raises(ConfigurationError, match="at least 32"):
            build_authenticator(store, settings)


async def test_the_chain_sends_keys_to_the_store_and_other_tokens_to_jwt(
    sqlite_url: str,
) -> None:
    async with open_store(sqlite_url) as store:
        authenticator = build_authenticator(store, AuthSettings.from_env(JWT_ENV))
        assert isinstance(authenticator, ChainAuthenticator)
        key, record = await create_key(store, ["operator"])
        by_key = await authenticator.authenticate(f"Bearer {key}")
        assert (by_key.name, by_key.kind, by_key.roles) == (record.id, "key", {Role.OPERATOR})
        by_jwt = await authenticator.authenticate(f"Bearer {token()}")
        assert (by_jwt.name, by_jwt.kind, by_jwt.roles) == ("bob", "jwt", {Role.READER})
        with pytest.raises(Unauthorized, match="missing credentials"):
            await authenticator.authenticate(None)
        with pytest.raises(Unauthorized, match="malformed API key"):
            await authenticator.authenticate("Bearer kr_garbage")
        with pytest.raises(Unauthorized, match="token expired"):
            await authenticator.authenticate(f"Bearer {token(exp=1)}")


async def test_without_jwt_only_keys_are_accepted(memory_url: str) -> None:
    async with open_store(memory_url) as store:
        authenticator = build_authenticator(store, AuthSettings(enabled=True))
        with pytest.raises(Unauthorized, match="JWT bearer tokens are not enabled"):
            await authenticator.authenticate(f"Bearer {token()}")


async def test_bootstrap_stores_an_admin_key_once(any_url: str) -> None:
    key = generate_key().token
    async with open_store(any_url) as store:
        assert await ensure_bootstrap_key(store, key) is True
        assert await ensure_bootstrap_key(store, key) is False
        [record] = await store.keys.keys()  # type: ignore[attr-defined]
        assert (record.name, record.roles, record.categories) == (
            "bootstrap-admin",
            ("admin",),
            None,
        )
        authenticator = build_authenticator(store, AuthSettings(enabled=True))
        principal = await authenticator.authenticate(f"Bearer {key}")
        assert principal.roles == {Role.ADMIN}
        await revoke_key(store, record.id)
        assert await ensure_bootstrap_key(store, key) is False  # a revoked key stays revoked
        with pytest.raises(Unauthorized, match="revoked"):
            await build_authenticator(store, AuthSettings(enabled=True)).authenticate(
                f"Bearer {key}"
            )


async def test_replicas_starting_at_once_store_the_bootstrap_key_once(any_url: str) -> None:
    key = generate_key().token
    settings = AuthSettings(enabled=True, bootstrap_admin_key=key)  # type: ignore[arg-type]
    stores = [open_store(any_url) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        authenticators = await asyncio.gather(*(start_authentication(s, settings) for s in stores))
        assert len(await stores[0].keys.keys()) == 1  # type: ignore[attr-defined]
        for authenticator in authenticators:
            assert (await authenticator.authenticate(f"Bearer {key}")).roles == {Role.ADMIN}
    finally:
        for store in stores:
            await store.close()


async def test_a_bad_bootstrap_key_names_the_setting_not_the_value(memory_url: str) -> None:
    async with open_store(memory_url) as store:
        with pytest.raises(ConfigurationError, match="KRONIKA_BOOTSTRAP_ADMIN_KEY") as caught:
            await ensure_bootstrap_key(store, "kr_hunter2-secret")
        assert "hunter2" not in str(caught.value)


async def test_the_bootstrap_key_may_come_from_a_file(sqlite_url: str, tmp_path: Path) -> None:
    key = generate_key().token
    path = tmp_path / "admin-key"
    path.write_text(key + "\n")
    settings = AuthSettings.from_env(
        {"KRONIKA_AUTH_ENABLED": "true", "KRONIKA_BOOTSTRAP_ADMIN_KEY_FILE": str(path)}
    )
    async with open_store(sqlite_url) as store:
        authenticator = await start_authentication(store, settings)
        assert (await authenticator.authenticate(f"Bearer {key}")).roles == {Role.ADMIN}
