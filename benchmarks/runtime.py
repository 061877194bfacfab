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
import asyncio
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

import kronika
from benchmarks.backends import Backend, MemoryBackend, PostgresBackend, SQLiteBackend
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
from benchmarks.store import git_revision
from kronika import open_store
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runtime", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backend",
        choices=["memory", "sqlite", "postgres", "postgresql", "all"],
        default="all",
        help="backend to measure; all = sqlite and postgres (default)",
    )
    parser.add_argument("--scale", choices=list(SCALES), default="small")
    parser.add_argument("--repeats", type=int, default=None, help="catch-ups per kind (best kept)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--postgres-url", default=None, help="as for benchmarks.store")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def make_backends(args: argparse.Namespace) -> list[Backend]:
    """The backends the command line asks for."""
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    made: list[Backend] = []
    for name in names:
        if name == "memory":
            made.append(MemoryBackend({}))
        elif name == "sqlite":
            made.append(SQLiteBackend({}))
        else:
            made.append(PostgresBackend({}, args.postgres_url))
    return made


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

    def say(text: str) -> None:
        log.print(f"  {backend.name} {text}")

    async with (
        backend.fresh_kronika_url("runtime") as url,
        open_store(url, **backend.options) as store,
    ):
        begin = time.perf_counter()
        await load(store, scale)
        say(f"loaded {scale.events:,} events in {time.perf_counter() - begin:.1f}s")
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
    results = []
    for backend in make_backends(args):
        try:
            reason, _ = await backend.unavailable()
            if reason:
                results.append({"backend": backend.name, "error": reason})
                continue
            result = await measure(backend, scale, log)
            result["verdicts"] = verdicts(result)
            results.append(result)
        except Exception as exc:  # reported in the table; the other backends still run
            results.append({"backend": backend.name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            await backend.close()
    return results


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
    args = parse_args(argv)
    out, log = Console(width=160), Console(stderr=True)
    started, load_avg = datetime.now(UTC), list(os.getloadavg())
    results = asyncio.run(run(args, log))
    title = (
        f"Kronika runtime benchmark, scale {args.scale}, {started:%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, load {load_avg[0]:.2f} at start"
    )
    render(results, out, title)
    if args.json:
        meta = {
            "started": started.isoformat(),
            "kronika_version": kronika.__version__,
            "git": git_revision(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_avg,
            "load_average_at_end": list(os.getloadavg()),
            "scale": {
                **asdict(SCALES[args.scale]),
                "repeats": args.repeats or SCALES[args.scale].repeats,
            },
            "command": ["python", "-m", "benchmarks.runtime", *sys.argv[1:]],
        }
        args.json.write_text(json.dumps({"run": meta, "results": results}, indent=2) + "\n")
    if any("error" in r for r in results):
        return 1
    failed = any("FAIL" in r["verdicts"].values() for r in results)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
