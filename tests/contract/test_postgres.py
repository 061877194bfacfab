"""The conformance suite on the PostgreSQL backend (each test in a schema of its own)."""

from __future__ import annotations

import pytest

from kronika.testing.chains import ChainContract
from kronika.testing.contract import EventStoreContract, SnapshotContract
from kronika.testing.retention import RetentionContract

pytestmark = pytest.mark.postgres


class TestPostgresStore(EventStoreContract):
    concurrency_events = 20_000

    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


class TestPostgresSnapshots(SnapshotContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


class TestPostgresRetention(RetentionContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


class TestPostgresChains(ChainContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
