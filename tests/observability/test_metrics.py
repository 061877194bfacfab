"""Kronika's metrics move when the public API is used, and applications can add their own.

The counters are process-global, so each test compares a value before and after.
"""

from __future__ import annotations

import pydantic
import pytest

import kronika
from kronika import NewEvent
from kronika.cqrs.commands import CommandBus
from kronika.cqrs.repository import Repository, Session
from kronika.errors import ConfigurationError, DomainError
from kronika.observability import metrics


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_appends_count_events_per_engine_and_failures_by_code(memory_url: str) -> None:
    before = sample("kronika_events_appended_total", engine="memory")
    calls = sample("kronika_append_duration_seconds_count", engine="memory")
    failed = sample("kronika_appends_failed_total", engine="memory", code="wrong_expected_version")
    async with kronika.open_store(memory_url) as store:
        await store.append("order-1", [NewEvent("Placed", {}), NewEvent("Paid", {})])
        with pytest.raises(kronika.ConcurrencyError):
            await store.append("order-1", [NewEvent("Placed", {})], expected_version="no_stream")
    assert sample("kronika_events_appended_total", engine="memory") == before + 2
    assert sample("kronika_append_duration_seconds_count", engine="memory") == calls + 2
    assert (
        sample("kronika_appends_failed_total", engine="memory", code="wrong_expected_version")
        == failed + 1
    )
    assert b"order-1" not in metrics.exposition()


class Open(pydantic.BaseModel):
    account_id: str


class Close(pydantic.BaseModel):
    account_id: str


async def test_commands_are_counted_timed_and_their_errors_coded(memory_url: str) -> None:
    async with kronika.open_store(memory_url) as store:
        bus = CommandBus(Repository(store))

        @bus.handler(Open)
        async def open_account(command: Open, session: Session) -> None:
            return None

        @bus.handler(Close)
        async def close_account(command: Close, session: Session) -> None:
            raise DomainError("the account is not empty")

        opened = sample("kronika_commands_total", command="Open")
        refusal = {"command": "Close", "code": "domain_rule_violated"}
        refused = sample("kronika_command_errors_total", **refusal)
        await bus.dispatch(Open(account_id="a"))
        with pytest.raises(DomainError):
            await bus.dispatch(Close(account_id="a"))
    assert sample("kronika_commands_total", command="Open") == opened + 1
    assert sample("kronika_command_duration_seconds_count", command="Open") >= 1
    assert sample("kronika_command_errors_total", **refusal) == refused + 1


def test_applications_register_their_own_metrics_on_the_same_registry() -> None:
    orders = metrics.counter("test_shop_orders_placed_total", "Orders placed.", ["channel"])
    orders.labels("web").inc(3)
    size = metrics.histogram("test_shop_basket_size", "Items per basket.")
    size.observe(2)
    queue = metrics.gauge("test_shop_queue_depth", "Orders waiting.")
    queue.set(7)
    text = metrics.exposition().decode()
    assert 'test_shop_orders_placed_total{channel="web"} 3.0' in text
    assert "test_shop_basket_size_count 1.0" in text
    assert "test_shop_queue_depth 7.0" in text


@pytest.mark.parametrize(
    ("name", "labels", "field"),
    [
        ("kronika_mine_total", (), "kronika_ prefix"),
        ("has space", (), "not a valid"),
        ("test_ok_total", ("bad-label",), "label name"),
    ],
)
def test_bad_metric_names_are_refused_clearly(
    name: str, labels: tuple[str, ...], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field):
        metrics.counter(name, "help", labels)


def test_a_duplicate_metric_name_is_a_configuration_error() -> None:
    metrics.gauge("test_dup_gauge", "once")
    with pytest.raises(ConfigurationError, match="test_dup_gauge"):
        metrics.gauge("test_dup_gauge", "twice")


async def test_a_postgresql_store_exports_its_pool(postgres_url: str) -> None:
    async with kronika.open_store(postgres_url) as store:
        await store.append("pool-1", [NewEvent("Placed", {})])
        assert sample("kronika_db_pool_size", engine="postgresql") >= 1
        assert sample("kronika_db_pool_max", engine="postgresql") >= 1
        assert (
            metrics.REGISTRY.get_sample_value(
                "kronika_db_connection_errors_total", {"engine": "postgresql"}
            )
            is not None
        )
    assert sample("kronika_db_pool_size", engine="postgresql") == 0  # closed: unwatched
