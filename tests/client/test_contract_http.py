"""The conformance suite through the HTTP client, against a real ``kronika serve``.

Each test gets a server subprocess of its own on a fresh database (SQLite file or
PostgreSQL schema), so "a fresh, empty store" means what it means for the other backends.
Two tests cannot apply over HTTP and say why where they are overridden: HTTP API v1 has no
way to choose a namespace per request (a server serves the namespace of its database URL).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from kronika.errors import ConfigurationError
from kronika.store import open_store
from kronika.store.protocol import EventStore
from kronika.testing.contract import EventStoreContract, SnapshotContract

NAMESPACES = (
    "HTTP API v1 serves one namespace per server (the one in its database URL); the client "
    "refuses another namespace rather than silently writing to the server's"
)


class _OverHttp(EventStoreContract):
    concurrency_writers = 8
    concurrency_events = 800
    """Lower than in-process: each append is a round trip through a server on 2 shared cores."""

    async def test_namespaces_are_isolated(
        self, store: EventStore, another: Callable[..., AbstractAsyncContextManager[EventStore]]
    ) -> None:
        # Replaces the contract's test (see NAMESPACES): what holds instead is that asking
        # for another namespace is refused at once, naming the option.
        with pytest.raises(ConfigurationError, match="'namespace'"):
            async with another(namespace="tenant-b"):
                pass
        assert store.namespace == "default"


class TestHttpOnSQLite(_OverHttp):
    @pytest.fixture
    def store_url(self, sqlite_server: Any) -> str:
        return sqlite_server.url


@pytest.mark.postgres
class TestHttpOnPostgres(_OverHttp):
    @pytest.fixture
    def store_url(self, postgres_server_process: Any) -> str:
        return postgres_server_process.url


class _SnapshotsOverHttp(SnapshotContract):
    async def test_snapshots_are_per_namespace(self, store_url: str, store: EventStore) -> None:
        # See NAMESPACES: the per-namespace half cannot be chosen from a client.
        with pytest.raises(ConfigurationError, match="'namespace'"):
            open_store(store_url, namespace="other")


class TestHttpSnapshotsOnSQLite(_SnapshotsOverHttp):
    @pytest.fixture
    def store_url(self, sqlite_server: Any) -> str:
        return sqlite_server.url


@pytest.mark.postgres
class TestHttpSnapshotsOnPostgres(_SnapshotsOverHttp):
    @pytest.fixture
    def store_url(self, postgres_server_process: Any) -> str:
        return postgres_server_process.url
