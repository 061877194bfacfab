"""What an inline projection costs appends (K8).

    python -m benchmarks.inline [--backend sqlite|postgresql|all] [--appends N] [--repeats N]

Appends of one ``OrderPlaced`` event each (the store benchmark's payload), on three stores
of each backend, each in a database of its own:

  plain     no inline projection
  inline    one inline SQL projection: an upsert per event into a totals table (and nothing
            else), in the append's transaction
  unused    the same projection registered, appending a type it does not handle (the cost of
            having one when an append does not need it)

``sequential``: one append after another. ``concurrent``: 16 tasks appending at once (SQLite
commits them in groups; PostgreSQL uses its connection pool). Runs alternate, in an order
that rotates (a run right after the inline one's writes is slowed by them), and the best of
``--repeats`` is kept, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.table import Table

import kronika
from benchmarks.common import order_data
from kronika import NewEvent, RecordedEvent
from kronika.runtime import InlineContext, InlineProjection, on

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MODES = ("plain", "inline", "unused")
CONCURRENCY = 16

TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} (customer TEXT PRIMARY KEY, orders BIGINT NOT NULL, "
    "amount DOUBLE PRECISION NOT NULL)"
)
UPSERT = (
    "INSERT INTO bench_totals (customer, orders, amount) VALUES (?, 1, ?) "
    "ON CONFLICT (customer) DO UPDATE SET orders = bench_totals.orders + 1, "
    "amount = bench_totals.amount + excluded.amount"
)


class CustomerTotals(InlineProjection):
    """One upsert per order: orders and amount per customer."""

    name = "bench-customer-totals"
    tables: ClassVar[dict[str, str]] = {"bench_totals": TABLE}

    def __init__(self, placeholder: str) -> None:
        self._upsert = UPSERT.replace("?", placeholder)

    @on("OrderPlaced")
    def placed(self, event: RecordedEvent, ctx: InlineContext) -> None:
        ctx.write(self._upsert, (event.data["customer"], event.data["amount"]))


async def _rate(store: Any, event_type: str, appends: int, concurrency: int) -> float:
    """Events/s of ``appends`` one-event appends, ``concurrency`` at a time."""
    prefix = uuid.uuid4().hex[:8]
    events = [NewEvent(event_type, order_data(i)) for i in range(appends)]

    async def worker(offset: int) -> None:
        for i in range(offset, appends, concurrency):
            await store.append(f"order-{prefix}{i}", [events[i]])

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return appends / (time.perf_counter() - started)


async def measure(urls: dict[str, str], placeholder: str, appends: int, repeats: int) -> dict:
    """Best events/s per (mode, concurrency) over ``repeats`` alternating runs."""
    best: dict[str, float] = {}
    stores = {
        "plain": kronika.open_store(urls["plain"]),
        "inline": kronika.open_store(urls["inline"], inline=[CustomerTotals(placeholder)]),
        "unused": kronika.open_store(urls["unused"], inline=[CustomerTotals(placeholder)]),
    }
    for store in stores.values():
        await store.open()
    try:
        for repeat in range(repeats):
            order = MODES[repeat % 3 :] + MODES[: repeat % 3]  # none always follows another
            for concurrency in (1, CONCURRENCY):
                for mode in order:
                    kind = "OrderShipped" if mode == "unused" else "OrderPlaced"
                    rate = await _rate(stores[mode], kind, appends, concurrency)
                    key = f"{mode}/{concurrency}"
                    best[key] = max(best.get(key, 0.0), rate)
    finally:
        for store in stores.values():
            await store.close()
    return best


def _urls(backend: str, folder: Path) -> tuple[dict[str, str], str, Callable[[], None]]:
    """Store URLs per mode, the SQL placeholder, and a clean-up."""
    if backend == "sqlite":
        return {m: f"sqlite:///{folder / f'{m}.db'}" for m in MODES}, "?", lambda: None
    schemas = {m: f"bench_inline_{m}_{uuid.uuid4().hex[:8]}" for m in MODES}

    def drop() -> None:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            for schema in schemas.values():
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return {m: f"{POSTGRES}?schema={s}" for m, s in schemas.items()}, "%s", drop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--appends", type=int, default=2000, help="appends per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    table = Table(title="Appends with an inline SQL projection (events/s, best of runs)")
    for column in ("backend", "writers", "plain", "inline", "inline/plain", "unused"):
        table.add_column(column, justify="right")
    results: dict[str, Any] = {}
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            urls, placeholder, drop = _urls(backend, Path(folder))
            try:
                best = asyncio.run(measure(urls, placeholder, args.appends, args.repeats))
            finally:
                drop()
            results[backend] = best
            for writers in (1, CONCURRENCY):
                plain, inline = best[f"plain/{writers}"], best[f"inline/{writers}"]
                table.add_row(
                    backend,
                    str(writers),
                    f"{plain:,.0f}",
                    f"{inline:,.0f}",
                    f"{inline / plain:.2f}x",
                    f"{best[f'unused/{writers}']:,.0f}",
                )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
