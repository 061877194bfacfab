"""Options of the PostgreSQL backend, parsed from the store URL and keyword arguments."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kronika.domain import names
from kronika.errors import ConfigurationError
from kronika.store.options import parse_options

__all__ = ["OPTIONS", "PASSTHROUGH", "PostgresSettings", "parse_url"]

PASSTHROUGH = frozenset(
    {
        "application_name",
        "channel_binding",
        "connect_timeout",
        "dbname",
        "gssencmode",
        "host",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "options",
        "passfile",
        "password",
        "port",
        "service",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    }
)
"""libpq connection parameters that stay in the URL and reach the driver unchanged."""

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _positive(kind: type[int] | type[float]) -> Any:
    def convert(value: Any) -> int | float:
        number = kind(value)
        if number <= 0:
            raise ValueError(f"must be > 0, got {value!r}")
        return number

    return convert


OPTIONS: dict[str, Callable[[Any], Any]] = {
    "namespace": str,
    "schema": str,
    "migrate": bool,
    "pool_min_size": _positive(int),
    "pool_max_size": _positive(int),
    "pool_timeout": _positive(float),
    "pool_max_idle": _positive(float),
    "statement_timeout": _positive(float),
    "poll_interval": _positive(float),
    "append_transactions": _positive(int),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresSettings:
    """Everything the PostgreSQL backend is configured with."""

    conninfo: str
    """The libpq URL (without Kronika's options)."""
    namespace: str = names.DEFAULT_NAMESPACE
    """The namespace (tenant) the store reads and writes."""
    schema: str = "kronika"
    """The PostgreSQL schema that holds every Kronika table and function."""
    migrate: bool = True
    """Apply pending migrations on open; if False, pending migrations make open() fail."""
    pool_min_size: int = 1
    """Connections the pool keeps open even when idle."""
    pool_max_size: int = 10
    """Most connections the pool opens (concurrent operations beyond it wait)."""
    pool_timeout: float = 10.0
    """Seconds to wait for a free connection before raising ``Unavailable``."""
    pool_max_idle: float = 300.0
    """Seconds an idle connection above ``pool_min_size`` is kept before it is closed."""
    statement_timeout: float | None = None
    """Cancel statements running longer than this many seconds (server default if None)."""
    poll_interval: float = 1.0
    """Fallback poll of live subscriptions when no notification arrives, in seconds."""
    append_transactions: int = 2
    """Most append transactions the store runs at once; appends arriving meanwhile wait and
    are committed together (group commit, see kronika.store.postgres.group_commit)."""

    def __post_init__(self) -> None:
        names.check_namespace(self.namespace)
        if not _SCHEMA.match(self.schema):
            raise ConfigurationError(
                f"store option 'schema': {self.schema!r} is not a plain identifier "
                "(letters, digits and '_', at most 63 characters)"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ConfigurationError(
                f"store option 'pool_min_size' ({self.pool_min_size}) exceeds "
                f"'pool_max_size' ({self.pool_max_size})"
            )

    @property
    def application_name_given(self) -> bool:
        """Whether the URL names the application (else Kronika names itself)."""
        return "application_name" in parse_qs(urlsplit(self.conninfo).query)


def parse_url(url: str, options: Mapping[str, Any]) -> PostgresSettings:
    """Settings from a ``postgresql://`` URL plus keyword options (which win)."""
    rest, typed = parse_options(url, options, allowed=OPTIONS, passthrough=PASSTHROUGH)
    scheme, sep, tail = rest.partition("://")
    if not sep or scheme.split("+")[0].lower() not in {"postgresql", "postgres"}:
        raise ConfigurationError("a PostgreSQL store URL starts with postgresql://")
    return PostgresSettings(conninfo=f"postgresql://{tail}", **typed)
