"""The SQLite backend's settings, parsed from a ``sqlite:///`` URL and keyword options."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kronika.domain import names
from kronika.errors import ConfigurationError
from kronika.store.options import parse_options

__all__ = ["OPTIONS", "SYNCHRONOUS_MODES", "SQLiteConfig"]

SYNCHRONOUS_MODES = ("full", "normal")
"""Accepted ``synchronous`` settings; ``off`` is refused as it can corrupt the database."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SQLiteConfig:
    """Where the database is and how the store uses it."""

    path: Path
    """Absolute path of the database file (relative URLs resolve against the working dir)."""
    namespace: str = names.DEFAULT_NAMESPACE
    """The namespace (tenant) the store reads and writes."""
    migrate: bool = True
    """Apply pending schema migrations when the store opens."""
    synchronous: str = "full"
    """``full`` (durable on power loss) or ``normal`` (faster; may lose the newest commits)."""
    readers: int = 4
    """Reader connections (and threads) serving reads concurrently."""
    busy_timeout: float = 5.0
    """Seconds to wait for another process's write lock before failing with Unavailable."""
    poll_interval: float = 0.05
    """Seconds between checks for other processes' writes while a subscription waits."""

    def __post_init__(self) -> None:
        names.check_namespace(self.namespace)
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"store option 'synchronous' must be one of {SYNCHRONOUS_MODES}, "
                f"got {self.synchronous!r}"
            )
        _require(self.readers >= 1, "readers", "must be at least 1")
        _require(self.busy_timeout >= 0, "busy_timeout", "must not be negative")
        _require(self.poll_interval > 0, "poll_interval", "must be positive")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteConfig:
        """Parse ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` plus options."""
        # parse_options's rebuilt URL loses the empty authority of sqlite:///, so the path
        # is taken from the URL as given.
        _, typed = parse_options(url, options, allowed=OPTIONS)
        return cls(path=path_of(url), **typed)


def _require(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise ConfigurationError(f"store option {option!r} {message}")


def _synchronous(value: Any) -> str:
    return str(value).strip().lower()


OPTIONS: dict[str, Callable[[Any], Any]] = {
    "namespace": str,
    "migrate": bool,
    "synchronous": _synchronous,
    "readers": int,
    "busy_timeout": float,
    "poll_interval": float,
}


def path_of(url: str) -> Path:
    """The absolute database path of a ``sqlite:///PATH`` URL (SQLAlchemy's convention)."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0].lower() != "sqlite" or "://" not in url:
        raise ConfigurationError(f"not a SQLite URL: {url!r}; use sqlite:///PATH")
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URLs have no host ({parts.netloc!r}): use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = unquote(parts.path.removeprefix("/"))
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"SQLite URL {url!r} names no database file; for a throw-away store use memory://"
        )
    return Path(os.path.abspath(path))
