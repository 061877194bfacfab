"""Choosing a backend by URL, and the sync facade."""

from __future__ import annotations

import pytest

import kronika
import kronika.sync
from kronika import ConfigurationError, NewEvent


@pytest.mark.parametrize("url", ["mysql://x", "nonsense", "http//no-scheme"])
def test_unknown_urls_are_refused_with_a_clear_message(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported store URL"):
        kronika.open_store(url)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown store option 'colour'"):
        kronika.open_store("memory://", colour="blue")
    with pytest.raises(ConfigurationError, match="unknown store option 'colour'"):
        kronika.open_store("memory://?colour=blue")


def test_options_from_the_url() -> None:
    store = kronika.open_store("memory://?namespace=tenant-a")
    assert store.namespace == "tenant-a"
    assert store.engine == "memory"


def test_the_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONIKA_DATABASE_URL", "memory://")
    assert kronika.open_store().engine == "memory"


def test_the_sync_facade_mirrors_the_async_store() -> None:
    with kronika.sync.open_store("memory://") as store:
        result = store.append("s-1", [NewEvent("A", {"x": 1})], expected_version=kronika.NO_STREAM)
        assert result.next_expected_version == 0
        assert [e.data for e in store.read_stream("s-1")] == [{"x": 1}]
        assert store.head_position() == result.position
        assert store.stream_info("s-1").version == 0
        with pytest.raises(kronika.ConcurrencyError):
            store.append("s-1", [NewEvent("A", {})], expected_version=kronika.NO_STREAM)
        subscription = store.subscribe()
        assert next(subscription).type == "A"


def test_the_sync_facade_refuses_inline_operations_where_there_are_none() -> None:
    # A store on a `kronika serve` (not connected: the refusal needs no server).
    with kronika.sync.open_store("http://127.0.0.1:9") as store:
        with pytest.raises(ConfigurationError, match="http backend has no inline projections"):
            store.inline_status()
        with pytest.raises(ConfigurationError, match="http backend has no inline projections"):
            store.drop_inline("x")
        with pytest.raises(ConfigurationError, match="'x' is not registered on this store"):
            store.rebuild_inline("x")


def test_unnamed_memory_stores_are_private_and_named_ones_shared() -> None:
    first, second = kronika.open_store("memory://"), kronika.open_store("memory://")
    assert first._log is not second._log  # type: ignore[attr-defined]
    named = kronika.open_store("memory://shared-a"), kronika.open_store("memory://shared-a")
    assert named[0]._log is named[1]._log  # type: ignore[attr-defined]
