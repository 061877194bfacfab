"""The conformance suite on the in-memory backend."""

from __future__ import annotations

import pytest

from kronika.testing.contract import EventStoreContract, SnapshotContract


class TestMemoryStore(EventStoreContract):
    concurrency_events = 20_000

    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url


class TestMemorySnapshots(SnapshotContract):
    @pytest.fixture
    def store_url(self, memory_url: str) -> str:
        return memory_url
