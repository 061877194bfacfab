"""The conformance suite on the in-memory backend."""

from __future__ import annotations

import pytest

from kronika.testing.chains import ChainContract
from kronika.testing.contract import EventStoreContract, SnapshotContract
from kronika.testing.retention import RetentionContract


class TestMemoryStore(EventStoreContract):
    concurrency_events = 20_000

    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url


class TestMemorySnapshots(SnapshotContract):
    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url


class TestMemoryRetention(RetentionContract):
    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url


class TestMemoryChains(ChainContract):
    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url
