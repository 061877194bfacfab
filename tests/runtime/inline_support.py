"""Helpers of the inline projection tests: the read model as stored, and as the log implies."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from inline_app import OrderTotals, PostgresOrderTotals
from psycopg import sql

from kronika import RecordedEvent

Row = tuple[int, int, int, int]
"""total, events, last_position, last_version"""

SELECT = "SELECT stream, total, events, last_position, last_version FROM order_totals"


def projection_for(url: str) -> OrderTotals:
    """The projection with the placeholders of the URL's engine."""
    return PostgresOrderTotals() if url.startswith("postgres") else OrderTotals()


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///`` URL."""
    return url.removeprefix("sqlite:///")


def split_postgres(url: str) -> tuple[str, str]:
    """``(server URL, schema)`` of a test store URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema")[0]
    rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
    return parts._replace(query=rest).geturl(), schema


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Rows of a statement on the store's database (its schema first on PostgreSQL)."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(sqlite_path(url))) as conn:
            return conn.execute(statement).fetchall()
    server, schema = split_postgres(url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return conn.execute(statement.encode()).fetchall()


def table(url: str) -> dict[str, Row]:
    """The read model's table, by stream."""
    return {row[0]: tuple(row[1:]) for row in query(url, SELECT)}  # type: ignore[misc]


def implied(events: list[RecordedEvent]) -> dict[str, Row]:
    """The table the events of the log imply."""
    model: dict[str, Row] = {}
    for event in events:
        if event.type == "OrderPlaced":
            amount = int(event.data["total"])
        elif event.type == "Refunded":
            amount = -int(event.data["amount"])
        else:
            continue
        total, count, _, _ = model.get(event.stream, (0, 0, 0, 0))
        model[event.stream] = (total + amount, count + 1, event.position, event.version)
    return model


async def documents(store: Any, streams: list[str]) -> dict[str, dict[str, Any] | None]:
    """The projection's document of each stream."""
    async with store.processing.documents_reader() as docs:
        return {s: await docs.get("orders", s) for s in streams}
