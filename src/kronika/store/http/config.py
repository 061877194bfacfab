"""Options of the HTTP client backend (``http://`` and ``https://`` store URLs)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kronika.domain import names
from kronika.errors import ConfigurationError
from kronika.store.options import parse_bool, parse_options

__all__ = ["OPTIONS", "TOKEN_ENV", "HttpConfig"]

TOKEN_ENV = "KRONIKA_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""The environment variable read for the bearer token when no ``token`` option is given."""


def _verify(value: Any) -> bool | str:
    """``true``/``false``, or the path of a CA bundle the server's certificate must chain to."""
    if isinstance(value, bool):
        return value
    try:
        return parse_bool(value)
    except ValueError:
        path = str(value)
    if not os.path.isfile(path):
        raise ValueError(f"expected true, false or the path of a CA bundle file, got {path!r}")
    return path


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        number = kind(value)
        if number <= 0:
            raise ValueError(f"must be greater than 0, got {value!r}")
        return number

    return convert


OPTIONS: dict[str, Callable[[Any], Any]] = {
    "namespace": str,
    "migrate": bool,
    "token": str,
    "timeout": _positive(float),
    "verify": _verify,
    "max_connections": _positive(int),
}
"""Store options this backend accepts (URL query or keywords).

``migrate`` is accepted for symmetry and ignored: a remote store never migrates the
server's database (``migrate()`` raises and says to run ``kronika migrate`` there).
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """Where the server is and how the client talks to it."""

    base_url: str
    """``http(s)://host:port[/prefix]`` without a query string or trailing slash."""
    namespace: str = names.DEFAULT_NAMESPACE
    """Always the default: the server decides the namespace (see :meth:`from_url`)."""
    migrate: bool = True
    """Accepted and ignored (see :data:`OPTIONS`)."""
    token: str | None = None
    """The bearer token (an API key or a JWT); ``$KRONIKA_TOKEN`` when not given."""
    timeout: float = 10.0
    """Seconds to connect, to wait for a free pooled connection, and for each read or write."""
    verify: bool | str = True
    """Check the server's TLS certificate (``True``), not (``False``), or against a CA file."""
    max_connections: int = 10
    """Most keep-alive connections used for requests at once; live subscriptions have their own."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> HttpConfig:
        """Parse ``http(s)://host:port`` plus options; the token defaults to ``$KRONIKA_TOKEN``."""
        base, typed = parse_options(url, options, allowed=OPTIONS)
        parts = urlsplit(base)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"HTTP store URL must look like http://host:port, got {_shown(base)!r}"
            )
        if parts.username or parts.password:
            raise ConfigurationError(
                "put credentials in the token option or $KRONIKA_TOKEN, not in the URL"
            )
        typed.setdefault("token", os.environ.get(TOKEN_ENV) or None)
        namespace = names.check_namespace(typed.get("namespace", names.DEFAULT_NAMESPACE))
        if namespace != names.DEFAULT_NAMESPACE:
            # HTTP API v1 has no way to name a namespace: the server serves its own. Writing
            # to it while the caller believes it writes elsewhere would mix tenants.
            raise ConfigurationError(
                f"store option 'namespace': a server serves one namespace (its own "
                f"KRONIKA_DATABASE_URL's); connect to a server for {namespace!r} instead"
            )
        return cls(base_url=base.rstrip("/"), **typed)

    def __repr__(self) -> str:
        # The token is a secret: never part of a repr, a log line or an error message.
        return f"HttpConfig(base_url={self.base_url!r}, namespace={self.namespace!r})"


def _shown(url: str) -> str:
    return url.rsplit("@", maxsplit=1)[-1]
