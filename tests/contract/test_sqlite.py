"""The conformance suite on the SQLite backend."""

from __future__ import annotations

import pytest

from kronika.testing.chains import ChainContract
from kronika.testing.contract import EventStoreContract, SnapshotContract
from kronika.testing.retention import RetentionContract


class TestSQLiteStore(EventStoreContract):
    concurrency_events = 20_000

    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


class TestSQLiteSnapshots(SnapshotContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


class TestSQLiteRetention(RetentionContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


class TestSQLiteChains(ChainContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url
