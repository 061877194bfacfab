"""How operator tools talk to a running server: one way to describe the connection, two
kinds of client.

:func:`server_config` turns a tool's ``--server``, ``--token``, ``--cacert`` and timeout
into the HTTP client store's :class:`~kronika.store.http.config.HttpConfig`. From it,
:func:`server_client` makes a plain httpx client for probes that judge raw answers (status
codes, headers, ``/metrics``: doctor and smoke), and :class:`ServerApi` sends API calls
through the store client's :class:`~kronika.store.http.transport.Transport`, where every
failure is a :mod:`kronika.errors` exception (the remote administration commands). Both
send the bearer token and trust the same certificates; an unreadable ``--cacert`` is a
``ValidationError`` naming the option.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from kronika.errors import ValidationError
from kronika.store.http.config import HttpConfig
from kronika.store.http.transport import Transport, ssl_context

__all__ = ["ServerApi", "answer_detail", "server_client", "server_config"]


def server_config(
    url: str,
    *,
    token: str | None,
    timeout: float,
    cacert: str | None = None,
    namespace: str | None = None,
) -> HttpConfig:
    """The connection to the server at ``url``: exactly this bearer ``token`` (``None``:
    none), the system's CA certificates or those in the PEM file ``cacert``, ``timeout``
    seconds per connection and request. A ``namespace`` other than the server's own is
    refused (``ConfigurationError``): a server serves one."""
    options: dict[str, Any] = {"timeout": timeout}
    if cacert is not None:
        with _reading_cacert(cacert), open(cacert, "rb"):
            pass  # the store option checks only that the file exists
        options["verify"] = cacert
    if namespace is not None:
        options["namespace"] = namespace
    return dataclasses.replace(HttpConfig.from_url(url, **options), token=token or None)


@contextlib.contextmanager
def _reading_cacert(cacert: object) -> Iterator[None]:
    """Turn a CA file that cannot be read or parsed into bad input naming ``--cacert``."""
    try:
        yield
    except OSError as exc:  # ssl.SSLError too: not PEM certificates
        raise ValidationError(f"cannot read {cacert}: {exc}", "--cacert") from None


def server_client(config: HttpConfig) -> httpx.AsyncClient:
    """A plain httpx client for the server of ``config``: the bearer token on every
    request, its certificates, its timeout. Answers of any status come back as they are."""
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    with _reading_cacert(config.verify):
        verify = ssl_context(config)
    return httpx.AsyncClient(
        base_url=config.base_url, headers=headers, timeout=config.timeout, verify=verify
    )


class ServerApi:
    """Calls to a server's HTTP API through the HTTP client store's transport; use it with
    ``async with``. An unreachable server is ``Unavailable`` naming its URL, and the
    server's problem+json answers come back as their :mod:`kronika.errors` classes."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        """Where the server is and how to talk to it."""
        self._transport: Transport | None = None

    async def __aenter__(self) -> Self:
        with _reading_cacert(self.config.verify):
            self._transport = Transport(self.config)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Send one request with ``body`` as JSON and ``params`` (but ``None`` ones) in the
        query; the answer's JSON (``None`` for an empty answer)."""
        assert self._transport is not None, "use ServerApi with async with"
        content = None if body is None else orjson.dumps(body)
        query = {k: v for k, v in params.items() if v is not None} or None
        response = await self._transport.call(method, path, params=query, body=content)
        return self._transport.decode(response) if response.content else None


def answer_detail(answer: httpx.Response) -> str:
    """What a refusing answer says: a problem document's ``detail`` (or ``title``), else
    the start of its text."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:200]
    return str(body)[:200]
