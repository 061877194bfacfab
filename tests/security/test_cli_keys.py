"""``kronika keys`` as an operator runs it, on SQLite and PostgreSQL: create (shown once),
list (never a secret), revoke, generate; and the created key authenticates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kronika import open_store
from kronika.errors import Unauthorized
from kronika.server.principal import Role
from kronika.server.security import AuthSettings, build_authenticator

KRONIKA = Path(sys.executable).with_name("kronika")
KEY = re.compile(r"^kr_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


def kronika(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command; the store URL comes from KRONIKA_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["COLUMNS"] = "200"
    if url:
        env["KRONIKA_DATABASE_URL"] = url
    return subprocess.run(
        [str(KRONIKA), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def ok(*args: str, url: str | None = None) -> str:
    result = kronika(*args, url=url)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


async def test_create_list_revoke(url: str) -> None:
    created = kronika(
        "keys", "create", "--role", "writer", "-r", "reader", "--category", "orders",
        "--name", "ci-deploy", "--expires-in", "90d", url=url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert KEY.match(token), created.stdout
    key_id = token.split("_")[1]
    assert f"Created API key {key_id}" in created.stderr
    assert "shown only once" in created.stderr

    listed = ok("keys", "list", url=url)
    assert key_id in listed
    assert "ci-deploy" in listed
    assert token.split("_", 2)[2] not in listed
    [row] = lines(ok("keys", "list", "--json", url=url))
    assert row["id"] == key_id
    assert (row["name"], row["roles"], row["categories"], row["status"]) == (
        "ci-deploy",
        ["reader", "writer"],
        ["orders"],
        "active",
    )
    assert row["expires_at"] is not None
    assert "secret" not in json.dumps(row)
    assert token.split("_", 2)[2] not in json.dumps(row)

    async with open_store(url) as store:
        principal = await build_authenticator(store, AuthSettings(enabled=True)).authenticate(
            f"Bearer {token}"
        )
        assert principal.roles == {Role.WRITER, Role.READER}
        assert principal.categories == {"orders"}

    assert f"Revoked API key {key_id}" in ok("keys", "revoke", key_id, url=url)
    [row] = lines(ok("keys", "list", "--json", url=url))
    assert row["status"] == "revoked"
    assert row["revoked_at"] is not None
    async with open_store(url) as store:
        with pytest.raises(Unauthorized, match="revoked"):
            await build_authenticator(store, AuthSettings(enabled=True)).authenticate(
                f"Bearer {token}"
            )


def test_create_json_shows_the_key_once(url: str) -> None:
    [row] = lines(ok("keys", "create", "--role", "admin", "--json", url=url))
    assert KEY.match(row["key"])
    assert row["roles"] == ["admin"]
    assert row["categories"] is None
    assert row["expires_at"] is None
    [listed] = lines(ok("keys", "list", "--json", url=url))
    assert "key" not in listed


def test_mistakes_get_one_clear_line(url: str) -> None:
    for args, code, words in [
        (("keys", "create", "--role", "root"), 2, "unknown role 'root'"),
        (("keys", "create", "--role", "reader", "--expires-in", "soon"), 2, "--expires-in"),
        (("keys", "revoke", "0123456789abcdef"), 1, "no API key with id"),
    ]:
        result = kronika(*args, url=url)
        assert result.returncode == code, result.stderr
        assert words in result.stderr
        assert "Traceback" not in result.stderr
    missing_role = kronika("keys", "create", url=url)
    assert missing_role.returncode == 2
    assert "--role" in missing_role.stderr


def test_database_url_option_overrides_the_environment(url: str, tmp_path: Path) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    token = ok("keys", "create", "--role", "reader", "--database-url", url, url=elsewhere)
    key_id = token.strip().split("_")[1]
    assert [r["id"] for r in lines(ok("keys", "list", "--json", "--database-url", url))] == [key_id]
    assert lines(ok("keys", "list", "--json", url=elsewhere)) == []
    assert key_id in ok("keys", "revoke", key_id, "--database-url", url, url=elsewhere)


def test_generate_prints_a_fresh_key_without_a_store(tmp_path: Path) -> None:
    first, second = ok("keys", "generate").strip(), ok("keys", "generate").strip()
    assert KEY.match(first)
    assert KEY.match(second)
    assert first != second
    assert not list(tmp_path.iterdir())
