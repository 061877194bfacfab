"""The CLI's choice between a database and a server, and its messages for refused tokens."""

from __future__ import annotations

import pytest

from kronika.cli import output
from kronika.cli.context import Settings
from kronika.cli.remote import RemoteOperations, explained
from kronika.errors import ConfigurationError, Forbidden, NotFound, Unauthorized


def test_a_server_is_chosen_by_option_or_by_an_http_url() -> None:
    on_database = Settings.from_options("sqlite:///k.db", None)
    assert not on_database.remote and on_database.shown_url == "sqlite:///k.db"
    given = Settings.from_options("postgresql://u:pw@db/k", None, "https://k.example/", "kr_x")
    assert (given.server, given.token, given.shown_url) == (
        "https://k.example",
        "kr_x",
        "https://k.example",
    )
    assert given.database_store().engine == "postgresql"  # worker and migrate keep the database
    assert Settings.from_options("http://127.0.0.1:8080", None).server == "http://127.0.0.1:8080"


@pytest.mark.parametrize("server", ["postgresql://db/k", "127.0.0.1:8080", "http://"])
def test_a_server_that_is_not_an_http_url_is_refused(server: str) -> None:
    with pytest.raises(ConfigurationError, match="--server must look like http://HOST:PORT"):
        Settings.from_options(None, None, server)


def test_a_refused_token_says_what_to_change() -> None:
    remote = Settings.from_options(None, None, "http://k:8080")
    missing = explained(Unauthorized("missing credentials"), remote)
    assert isinstance(missing, Unauthorized)
    assert missing.message == (
        "the server at http://k:8080 refused: missing credentials; "
        "give an API key or JWT with --token or KRONIKA_TOKEN"
    )
    with_token = Settings.from_options(None, None, "http://k:8080", "kr_x")
    assert "check the key or token" in explained(Unauthorized("unknown"), with_token).message
    forbidden = explained(Forbidden("k lacks the 'admin' permission"), with_token)
    assert isinstance(forbidden, Forbidden) and "allows it" in forbidden.message
    other = NotFound("no processor")
    assert explained(other, remote) is other
    local = Settings.from_options("sqlite:///k.db", None)
    plain = Unauthorized("missing credentials")
    assert explained(plain, local) is plain


def test_refused_credentials_exit_2_like_bad_input() -> None:
    assert output.exit_code_for(Unauthorized("x")) == 2
    assert output.exit_code_for(Forbidden("x")) == 2
    assert output.exit_code_for(NotFound("x")) == 1


def test_a_namespace_other_than_the_servers_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigurationError, match="'namespace'"):
        RemoteOperations("http://k:8080", "kr_x", "tenant-b")
    assert RemoteOperations("http://k:8080", None, "default").config.namespace == "default"
