"""How operator tools describe their connection to a server (doctor, smoke, remote admin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kronika.errors import ConfigurationError, ValidationError
from kronika.ops.httpclient import ServerApi, server_client, server_config


def test_the_token_given_is_the_token_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONIKA_TOKEN", "kr_from_the_environment")
    config = server_config("https://k.example:8443/", token="kr_given", timeout=5)
    assert (config.base_url, config.token, config.timeout) == (
        "https://k.example:8443",
        "kr_given",
        5,
    )
    assert config.verify is True
    # The CLI reads $KRONIKA_TOKEN into --token itself: none given means none sent.
    assert server_config("http://k:8080", token=None, timeout=5).token is None


async def test_the_probe_client_sends_the_bearer_token() -> None:
    config = server_config("http://k:8080", token="kr_given", timeout=3)
    async with server_client(config) as client:
        assert client.headers["Authorization"] == "Bearer kr_given"
        assert str(client.base_url) == "http://k:8080"
    async with server_client(server_config("http://k:8080", token=None, timeout=3)) as client:
        assert "Authorization" not in client.headers


def test_a_missing_cacert_is_bad_input_naming_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(ValidationError, match="cannot read") as raised:
        server_config("https://k:8443", token=None, timeout=3, cacert=str(missing))
    assert raised.value.errors[0][0] == "--cacert"
    assert str(missing) in raised.value.message


async def test_a_cacert_without_certificates_is_bad_input_naming_the_option(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_bytes(b"not a certificate")
    config = server_config("https://k:8443", token=None, timeout=3, cacert=str(bad))
    with pytest.raises(ValidationError, match="cannot read") as raised:
        server_client(config)
    assert raised.value.errors[0][0] == "--cacert"
    with pytest.raises(ValidationError, match="cannot read"):
        await ServerApi(config).__aenter__()


def test_a_namespace_other_than_the_servers_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="'namespace'"):
        server_config("http://k:8080", token=None, timeout=3, namespace="tenant-b")
