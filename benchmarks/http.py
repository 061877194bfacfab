"""Appends over HTTP (a real ``kronika serve``) against the same appends in-process.

    python -m benchmarks.http [--backend sqlite|postgres] [--scale tiny|small|full] [--json FILE]

Each part runs on a fresh database (a temporary SQLite file or a new PostgreSQL schema):

- **A1/A16/A64**: single-event appends, each client to its own stream, by 1, 16 and 64
  concurrent clients, first in-process (``kronika.open_store(database_url)``), then over
  HTTP through the client backend (``kronika.open_store("http://...")`` with as many
  connections as clients), then with ``wrk`` (benchmarks/http_append.lua: one connection
  per client, every append to a new stream; the server's capacity without a Python client
  on the same cores; ``scripts/install-system-deps`` installs it). Without wrk on the PATH a
  lean Python generator (pre-encoded requests on keep-alive sockets) stands in for it.
  Throughput, latency p50/p99 and the ratios to in-process.
- **F100**: 100 live subscribers on ``/v1/all/live``; for each appended event, the time
  from the append call until all 100 have received it (p50/p99).
- **O**: overload: a server limited to a few concurrent requests gets many more clients;
  it must answer the excess with 429 quickly instead of queueing them.

See docs/benchmarks.md for the figures and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.cli import make_backends, options
from benchmarks.common import EVENT_TYPE, METADATA, order_data
from kronika import EventStore, NewEvent, open_store

__all__ = ["main"]

KRONIKA = str(Path(sys.executable).with_name("kronika"))
WRK_SCRIPT = Path(__file__).with_name("http_append.lua")


@dataclass(frozen=True)
class HttpScale:
    """How much work each part does."""

    name: str
    appends: int
    """Appends per concurrency level (split among the clients)."""
    fanout_events: int
    """Events appended one by one while 100 subscribers listen."""
    overload_requests: int
    """Requests sent in the overload part."""
    wrk_seconds: int
    """How long wrk sends appends at each concurrency level."""
    subscribers: int = 100
    levels: tuple[int, ...] = (1, 16, 64)


SCALES = {
    "tiny": HttpScale(
        "tiny", appends=128, fanout_events=5, overload_requests=256, wrk_seconds=1, subscribers=20
    ),
    "small": HttpScale(
        "small", appends=2_048, fanout_events=30, overload_requests=2_000, wrk_seconds=5
    ),
    "full": HttpScale(
        "full", appends=8_192, fanout_events=100, overload_requests=8_000, wrk_seconds=15
    ),
}

TARGET_RATIO = 0.40
"""With 16 clients, HTTP appends reach at least this share of the in-process rate."""
TARGET_P99_MS = 50.0
"""With 16 clients on PostgreSQL, the p99 latency of an HTTP append stays below this."""
TARGET_REJECT_P99_MS = 50.0
"""Under overload, 429 answers come back within this (p99): rejected, not queued."""


@dataclass
class Run:
    """Appends by some concurrent clients: the rate and the latencies."""

    clients: int
    events: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
        }


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def _event(i: int) -> NewEvent:
    return NewEvent(EVENT_TYPE, order_data(i), METADATA)


async def appends(store: EventStore, clients: int, total: int, prefix: str) -> Run:
    """``total`` single-event appends by ``clients`` tasks, each to its own stream."""
    run = Run(clients=clients)
    per_client = max(1, total // clients)

    async def client(c: int) -> None:
        for i in range(per_client):
            began = time.perf_counter()
            await store.append(f"{prefix}-{c}", [_event(i)])
            run.latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    run.seconds = time.perf_counter() - start
    run.events = per_client * clients
    return run


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def server(database_url: str, **settings: str) -> AsyncIterator[str]:
    """A ``kronika serve`` subprocess on ``database_url``; yields its base URL."""
    port = free_port()
    env = {**os.environ, "KRONIKA_RATE_LIMIT": "0", "KRONIKA_MAX_CONCURRENCY": "256"}
    env.update({f"KRONIKA_{k.upper()}": v for k, v in settings.items()})
    env.pop("KRONIKA_DATABASE_URL", None)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            KRONIKA, "serve", "--port", str(port), "--database-url", database_url,
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            await _wait_ready(url, process, log)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(url: str, process: asyncio.subprocess.Process, log: Any) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log.seek(0)
                raise RuntimeError(f"kronika serve exited: {log.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("kronika serve was not ready within 60 s")


Fresh = Callable[[str], contextlib.AbstractAsyncContextManager[str]]


class LeanConnection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded appends, as wrk would: what
    the server alone can take, without the Python client's CPU on the same two cores."""

    def __init__(self, base: str) -> None:
        self.host, port = base.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> LeanConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._writer is not None
        self._writer.close()

    async def append(self, stream: str, i: int) -> int:
        """POST one event; the answer's status."""
        assert self._reader is not None
        assert self._writer is not None
        body = orjson.dumps(
            {"events": [{"type": EVENT_TYPE, "data": order_data(i), "metadata": METADATA}]}
        )
        head = f"POST /v1/streams/{stream} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self._writer.write(head.encode() + body)
        answer = await self._reader.readuntil(b"\r\n\r\n")
        length = int(answer.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await self._reader.readexactly(length)
        return int(answer.split(b" ", 2)[1])


async def lean_appends(base: str, clients: int, total: int, prefix: str) -> Run:
    """The appends of :func:`appends` from :class:`LeanConnection` clients."""
    run = Run(clients=clients)
    per_client = max(1, total // clients)

    async def client(c: int) -> None:
        async with LeanConnection(base) as connection:
            for i in range(per_client):
                began = time.perf_counter()
                status = await connection.append(f"{prefix}-{c}", i)
                if status != 200:
                    raise RuntimeError(f"append answered {status}")
                run.latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    run.seconds = time.perf_counter() - start
    run.events = per_client * clients
    return run


async def wrk_appends(base: str, clients: int, seconds: int, prefix: str) -> dict[str, Any]:
    """``wrk`` with ``clients`` connections for ``seconds``: a :meth:`Run.summary` shape."""
    with tempfile.NamedTemporaryFile(suffix=".json") as body:
        body.write(
            orjson.dumps(
                {"events": [{"type": EVENT_TYPE, "data": order_data(1), "metadata": METADATA}]}
            )
        )
        body.flush()
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(WRK_SCRIPT), base, "--", prefix, body.name,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output = (await process.communicate())[0].decode()
    match = re.search(r"^WRK (\{.*\})$", output, re.MULTILINE)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {output[-2000:]}")
    result = json.loads(match.group(1))
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"wrk saw errors: {result}")
    duration = result["duration_us"] / 1e6
    return {
        "clients": clients,
        "events": result["requests"],
        "seconds": round(duration, 3),
        "rate": round(result["requests"] / duration, 1),
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "generator": "wrk",
    }


async def measure_appends(fresh: Fresh, scale: HttpScale, log: Console) -> list[dict[str, Any]]:
    """A1/A16/A64: in-process, over HTTP with the client, with wrk (or the lean generator)."""
    rows: list[dict[str, Any]] = []
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk:
        log.print("  wrk is not installed (scripts/install-system-deps): lean generator instead")
    for clients in scale.levels:
        async with fresh(f"inproc{clients}") as url, open_store(url) as store:
            local = await appends(store, clients, scale.appends, "local")
        async with (
            fresh(f"http{clients}") as url,
            server(url) as base,
            open_store(base, max_connections=clients) as remote,
        ):
            await appends(remote, clients, clients * 2, "warm")  # connect the pool
            http = await appends(remote, clients, scale.appends, "remote")
            if use_wrk:
                load = await wrk_appends(base, clients, scale.wrk_seconds, "wrk")
            else:
                lean = await lean_appends(base, clients, scale.appends, "lean")
                load = {**lean.summary(), "generator": "lean"}
        row = {
            "part": f"A{clients}",
            "in_process": local.summary(),
            "http": http.summary(),
            "load": load,
            "ratio": round(http.rate / local.rate, 3) if local.rate else 0.0,
            "load_ratio": round(load["rate"] / local.rate, 3) if local.rate else 0.0,
        }
        log.print(
            f"  A{clients:<3} in-process {local.rate:>7,.0f} ev/s, client {http.rate:>6,.0f} "
            f"(p99 {row['http']['p99_ms']} ms), {load['generator']} {load['rate']:>6,.0f} ev/s "
            f"(p99 {load['p99_ms']} ms)"
        )
        rows.append(row)
    return rows


async def measure_fanout(fresh: Fresh, scale: HttpScale, log: Console) -> dict[str, Any]:
    """F100: append one event at a time; time from the call until every subscriber has it."""
    n, events = scale.subscribers, scale.fanout_events
    async with fresh("fanout") as url, server(url) as base, open_store(base) as store:
        arrived: dict[int, float] = {}
        counts: dict[int, int] = defaultdict(int)
        everyone: dict[int, asyncio.Event] = defaultdict(asyncio.Event)

        async def subscriber() -> None:
            seen = 0
            async for event in store.subscribe(from_position=1):
                counts[event.position] += 1
                if counts[event.position] == n:
                    arrived[event.position] = time.perf_counter()
                    everyone[event.position].set()
                seen += 1
                if seen >= events:
                    return

        tasks = [asyncio.create_task(subscriber()) for _ in range(n)]
        await asyncio.sleep(1.0 + n * 0.01)  # let every SSE connection open
        delays: list[float] = []
        for i in range(events):
            began = time.perf_counter()
            result = await store.append("fanout-1", [_event(i)])
            await asyncio.wait_for(everyone[result.position].wait(), 30)
            delays.append(arrived[result.position] - began)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    p50, p99 = percentile(delays, 50) * 1000, percentile(delays, 99) * 1000
    log.print(f"  F{n}: all {n} subscribers have an event p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return {
        "part": f"F{n}",
        "subscribers": n,
        "events": events,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
    }


async def measure_overload(fresh: Fresh, scale: HttpScale, log: Console) -> dict[str, Any]:
    """O: 64 lean clients against a server that handles 4 requests at once."""
    clients, limit = 64, 4
    ok: list[float] = []
    rejected: list[float] = []
    per_client = max(1, scale.overload_requests // clients)

    async def client(base: str, c: int) -> None:
        async with LeanConnection(base) as connection:
            for i in range(per_client):
                began = time.perf_counter()
                status = await connection.append(f"load-{c}", i)
                (ok if status == 200 else rejected).append(time.perf_counter() - began)
                if status not in (200, 429):
                    raise RuntimeError(f"append answered {status}")

    async with fresh("overload") as url, server(url, max_concurrency=str(limit)) as base:
        start = time.perf_counter()
        await asyncio.gather(*(client(base, c) for c in range(clients)))
        seconds = time.perf_counter() - start
    row = {
        "part": "O",
        "clients": clients,
        "max_concurrency": limit,
        "requests": len(ok) + len(rejected),
        "accepted": len(ok),
        "rejected_429": len(rejected),
        "seconds": round(seconds, 2),
        "accepted_p50_ms": round(percentile(ok, 50) * 1000, 2),
        "accepted_p99_ms": round(percentile(ok, 99) * 1000, 2),
        "rejected_p50_ms": round(percentile(rejected, 50) * 1000, 2),
        "rejected_p99_ms": round(percentile(rejected, 99) * 1000, 2),
    }
    log.print(
        f"  O: {row['requests']} requests, {len(rejected)} got 429 "
        f"(p50 {row['rejected_p50_ms']} ms, p99 {row['rejected_p99_ms']} ms), accepted "
        f"p50 {row['accepted_p50_ms']} ms, p99 {row['accepted_p99_ms']} ms"
    )
    return row


def verdicts(backend: str, rows: list[dict[str, Any]], overload: dict[str, Any]) -> list[str]:
    """PASS/FAIL lines against the targets (for the client and for wrk or the lean generator)."""
    a16 = next(r for r in rows if r["part"] == "A16")
    generator = a16["load"]["generator"]
    lines = []
    for side, ratio in (("client", a16["ratio"]), (generator, a16["load_ratio"])):
        text = f"A16 {side} HTTP/in-process ratio {ratio:.2f} >= {TARGET_RATIO}"
        lines.append(_verdict(text, ratio >= TARGET_RATIO))
    if backend == "postgresql":
        for side, key in (("client", "http"), (generator, "load")):
            p99 = a16[key]["p99_ms"]
            text = f"A16 {side} p99 {p99} ms < {TARGET_P99_MS:g} ms"
            lines.append(_verdict(text, p99 < TARGET_P99_MS))
    rejected = overload["rejected_429"]
    quick = overload["rejected_p99_ms"] < TARGET_REJECT_P99_MS
    lines.append(
        _verdict(
            f"overload: {rejected} answered 429, p99 {overload['rejected_p99_ms']} ms "
            f"< {TARGET_REJECT_P99_MS:g} ms",
            rejected > 0 and quick,
        )
    )
    return lines


def _verdict(text: str, ok: bool) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


def render(rows: list[dict[str, Any]], out: Console, title: str) -> None:
    """The append table."""
    table = Table(title=title)
    generator = rows[0]["load"]["generator"] if rows else "wrk"
    columns = ["part", "in-process ev/s", "client ev/s", "client/in-proc", "client p50/p99 ms",
               f"{generator} ev/s", f"{generator}/in-proc", f"{generator} p50/p99 ms",
               "in-proc p99 ms"]  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name == "part" else "right")
    for r in rows:
        http, load, local = r["http"], r["load"], r["in_process"]
        table.add_row(
            r["part"],
            f"{local['rate']:,.0f}",
            f"{http['rate']:,.0f}",
            f"{r['ratio']:.2f}x",
            f"{http['p50_ms']:.1f} / {http['p99_ms']:.1f}",
            f"{load['rate']:,.0f}",
            f"{r['load_ratio']:.2f}x",
            f"{load['p50_ms']:.1f} / {load['p99_ms']:.1f}",
            f"{local['p99_ms']:.1f}",
        )
    out.print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = options(
        "http",
        __doc__,
        description=__doc__,
        scales=SCALES,
        default_scale="small",
        scale_help="tiny (smoke test), small (default) or full",
        backends=["sqlite", "postgres", "postgresql"],
        default_backend="sqlite",
        backend_help="the server's database (default sqlite)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, log: Console) -> dict[str, Any]:
    """Every part on the chosen backend."""
    scale = SCALES[args.scale]
    [backend] = make_backends(args.backend, args.postgres_url)
    fresh: Fresh = backend.fresh_kronika_url
    try:
        parts: list[Callable[[], Awaitable[Any]]] = [
            lambda: measure_appends(fresh, scale, log),
            lambda: measure_fanout(fresh, scale, log),
            lambda: measure_overload(fresh, scale, log),
        ]
        rows, fanout, overload = [await part() for part in parts]
    finally:
        await backend.close()
    return {"backend": backend.name, "appends": rows, "fanout": fanout, "overload": overload}


def main(argv: list[str] | None = None) -> int:
    """Run, print the table and verdicts, write JSON; 1 on a missed target with --strict."""
    args = parse_args(argv)
    out, log = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=max(out.width, 160))
    started, load = datetime.now(UTC), os.getloadavg()[0]
    results = asyncio.run(run(args, log))
    name = results["backend"]
    title = (
        f"Kronika HTTP benchmark on {name}, scale {args.scale}, "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {load:.2f}"
    )
    render(results["appends"], out, title)
    fan = results["fanout"]
    out.print(
        f"SSE fan-out to {fan['subscribers']} subscribers: p50 {fan['p50_ms']} ms, "
        f"p99 {fan['p99_ms']} ms over {fan['events']} events"
    )
    lines = verdicts(name, results["appends"], results["overload"])
    for line in lines:
        out.print(line)
    if args.json:
        meta = {
            "started": started.isoformat(),
            "scale": asdict(SCALES[args.scale]),
            "load_average_at_start": load,
            "cpus": os.cpu_count(),
        }
        args.json.write_text(json.dumps({**meta, **results, "verdicts": lines}, indent=2) + "\n")
    return 1 if args.strict and any(line.startswith("FAIL") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
