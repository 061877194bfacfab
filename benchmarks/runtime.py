"""The processing runtime: projection catch-up against the store's raw global read, and the
latency from an append to the read model.

    python -m benchmarks.runtime [--backend memory|sqlite|postgres|all] [--scale tiny|small|full]
                                 [--repeats N] [--json out.json] [--strict]

Per backend, one fresh store is loaded with the scale's events; then, in the same process,
the raw global read, a SQL projection's and a documents projection's catch-up from position
0 (each the best of ``--repeats``) and the append-to-projected latency with a live worker
are measured. See docs/benchmarks.md ("Processing runtime").
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from benchmarks.backends import Backend
from benchmarks.cli import make_backends, measure_each, options, run_and_report
from benchmarks.runtime_cases import (
    RuntimeScale,
    Table,
    catch_up,
    create_table,
    documents_projection,
    latency,
    load,
    raw_read,
    sql_projection,
    supports_sql,
    table_total,
)
from kronika.runtime.worker import processing_of
from kronika.store.protocol import EventStore

__all__ = ["main"]

SCALES = {
    "tiny": RuntimeScale(name="tiny", events=1_000, streams=20, latency_events=20),
    "small": RuntimeScale(name="small", events=10_000, streams=100, latency_events=200),
    "full": RuntimeScale(name="full", events=100_000, streams=1_000, latency_events=500, repeats=2),
}
CATCH_UP_TARGET = 0.5
"""SQL projection catch-up, as a share of the raw global read rate."""
LATENCY_TARGET_MS = 50.0
"""p99 append-to-projected on PostgreSQL."""


async def _sql_catch_up(store: EventStore, rep: int, events: int) -> float:
    table = Table(store, f"totals_{rep}")
    await create_table(store, table)
    seconds = await catch_up(store, sql_projection(f"sql-{rep}", table))
    counted = await table_total(store, table)
    if counted != events:
        raise RuntimeError(f"the SQL read model counted {counted} orders, not {events}")
    return seconds


async def _docs_catch_up(store: EventStore, rep: int, events: int, streams: int) -> float:
    projection = documents_projection(f"docs-{rep}")
    seconds = await catch_up(store, projection)
    counted = 0
    async with processing_of(store).documents_reader() as docs:
        for s in range(streams):
            doc = await docs.get(projection.name, f"order-{s}")
            counted += 0 if doc is None else int(doc["orders"])
    if counted != events:
        raise RuntimeError(f"the documents counted {counted} orders, not {events}")
    return seconds


async def _rounds(
    store: EventStore, scale: RuntimeScale, say: Callable[[str], None]
) -> dict[str, list[float]]:
    """Raw read, SQL catch-up and documents catch-up, ``scale.repeats`` times each."""
    rates: dict[str, list[float]] = {"read": [], "sql": [], "docs": []}
    for rep in range(scale.repeats):
        gc.collect()
        count, seconds = await raw_read(store)
        if count != scale.events:
            raise RuntimeError(f"read {count} events, not {scale.events}")
        rates["read"].append(count / seconds)
        say(f"raw read      #{rep + 1}: {rates['read'][-1]:>9,.0f} ev/s")
        if supports_sql(store):
            gc.collect()
            rates["sql"].append(scale.events / await _sql_catch_up(store, rep, scale.events))
            say(f"SQL catch-up  #{rep + 1}: {rates['sql'][-1]:>9,.0f} ev/s")
        gc.collect()
        seconds = await _docs_catch_up(store, rep, scale.events, scale.streams)
        rates["docs"].append(scale.events / seconds)
        say(f"docs catch-up #{rep + 1}: {rates['docs'][-1]:>9,.0f} ev/s")
    return rates


async def measure(backend: Backend, scale: RuntimeScale, log: Console) -> dict[str, Any]:
    """Everything on one backend, in one store."""

    say = backend.teller(log)
    filled = backend.loaded_store("runtime", lambda store: load(store, scale), scale.events, say)
    async with filled as (url, store):
        rates = await _rounds(store, scale, say)
        lat = await latency(store, scale, url, "l")
        say(f"latency: p50 {lat.p50:.1f} ms, p99 {lat.p99:.1f} ms, max {lat.max:.1f} ms")
    return {
        "backend": backend.name,
        "events": scale.events,
        "read": max(rates["read"]),
        "sql": max(rates["sql"]) if rates["sql"] else None,
        "docs": max(rates["docs"]),
        "samples": rates,
        "latency_ms": asdict(lat),
    }


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    """PASS/FAIL against the issue's targets (n/a where there is none)."""
    out = {"catch_up": "n/a", "latency": "n/a"}
    if result.get("sql") is not None:
        ok = result["sql"] / result["read"] >= CATCH_UP_TARGET
        out["catch_up"] = "PASS" if ok else "FAIL"
    if result["backend"] == "postgresql":
        ok = result["latency_ms"]["p99"] < LATENCY_TARGET_MS
        out["latency"] = "PASS" if ok else "FAIL"
    return out


async def run(args: argparse.Namespace, log: Console) -> list[dict[str, Any]]:
    """Measure every selected backend; a backend that fails is reported with its error."""
    scale = SCALES[args.scale]
    if args.repeats:
        scale = RuntimeScale(**{**asdict(scale), "repeats": args.repeats})

    async def judged(backend: Backend) -> dict[str, Any]:
        result = await measure(backend, scale, log)
        return {**result, "verdicts": verdicts(result)}

    return await measure_each(make_backends(args.backend, args.postgres_url), judged)


def _rate(value: float | None, read: float) -> str:
    return "-" if value is None else f"{value:,.0f} ({value / read:.2f}x)"


def render(results: list[dict[str, Any]], out: Console, title: str) -> None:
    """The results as a table on stdout."""
    table = RichTable(title=title)
    for column in (
        "backend",
        "raw read ev/s",
        "SQL catch-up ev/s",
        "docs catch-up ev/s",
        "latency p50 / p99 ms",
        "catch-up >= 0.5x",
        "p99 < 50 ms",
    ):
        table.add_column(column)
    for r in results:
        if "error" in r:
            table.add_row(r["backend"], f"error: {r['error']}", "", "", "", "ERROR", "ERROR")
            continue
        lat = r["latency_ms"]
        table.add_row(
            r["backend"],
            f"{r['read']:,.0f}",
            _rate(r["sql"], r["read"]),
            _rate(r["docs"], r["read"]),
            f"{lat['p50']:.1f} / {lat['p99']:.1f}",
            r["verdicts"]["catch_up"],
            r["verdicts"]["latency"],
        )
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON); return the exit status."""
    args = options(
        "runtime",
        __doc__,
        scales=SCALES,
        default_scale="small",
        repeats="catch-ups per kind (best kept)",
    ).parse_args(argv)
    scale = SCALES[args.scale]
    scale_info = {**asdict(scale), "repeats": args.repeats or scale.repeats}
    return run_and_report(
        "runtime",
        args,
        run,
        render,
        title=f"Kronika runtime benchmark, scale {args.scale}",
        scale=scale_info,
    )


if __name__ == "__main__":
    sys.exit(main())
