"""The server's own cost per request: appends through the ASGI app, without sockets.

    python -m benchmarks.asgi [--url URL] [--requests N] [--clients N] [--repeats N]
                              [--loop uvloop|asyncio] [--profile] [--sort tottime]

Calls :func:`kronika.server.app.create_app`'s app directly, as uvicorn would after parsing
a request, with ``--clients`` appends in flight at once (each a single event to a new
stream, the body wrk sends in ``benchmarks.http``), rate limiting off and the log level at
``warning``. Each repeat runs on a fresh store (a new SQLite file, a new memory store) and
also times the same appends made in-process on another fresh store, so

- **app** is microseconds of this process per append request (the loop thread plus, on
  SQLite, the writer thread it waits for: one GIL),
- **store** is the same per in-process append, and
- **server** = app - store: what HTTP handling adds on the loop before uvicorn's own
  parsing and socket writes (which ``benchmarks.http`` measures end to end).

The best repeat of each is reported (the machine's noise only ever adds). ``--profile``
prints a cProfile listing of one more run through the app (it inflates small calls ~2x:
read it for shares, not for absolute times). See docs/benchmarks.md, "HTTP".
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from statistics import median
from typing import Any

import kronika
from kronika import NewEvent
from kronika.server.app import create_app
from kronika.server.settings import ServerSettings

__all__ = ["main"]

BODY = (
    b'{"expected_version":"any","events":[{"type":"OrderPlaced","data":{"order":"o-1",'
    b'"amount":12.5,"items":[1,2,3]},"metadata":{"source":"bench"}}]}'
)
DATA = {"order": "o-1", "amount": 12.5, "items": [1, 2, 3]}
WARMUP = 500


def _scope(stream: str) -> dict[str, Any]:
    path = f"/v1/streams/{stream}"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _post(app: Any, stream: str) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the client stays connected until the answer
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(stream), receive, send)
    if status != [200]:
        raise RuntimeError(f"append answered {status}")


async def _concurrently(count: int, clients: int, call: Callable[[int], Awaitable[None]]) -> float:
    """Seconds for ``count`` calls, ``clients`` at a time."""
    gate = asyncio.Semaphore(clients)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


async def _through_app(
    url: str, count: int, clients: int, profile: cProfile.Profile | None
) -> float:
    environ = {"KRONIKA_RATE_LIMIT": "0", "KRONIKA_LOG_LEVEL": "warning"}
    app = create_app(ServerSettings.from_env(environ, database_url=url))
    async with app.router.lifespan_context(app):
        run = uuid.uuid4().hex[:8]
        await _concurrently(WARMUP, clients, lambda i: _post(app, f"warm{run}-{i}"))
        if profile:
            profile.enable()
        seconds = await _concurrently(count, clients, lambda i: _post(app, f"b{run}-{i}"))
        if profile:
            profile.disable()
    return seconds / count * 1e6


async def _in_process(url: str, count: int, clients: int) -> float:
    async with kronika.open_store(url) as store:
        run = uuid.uuid4().hex[:8]

        async def append(i: int) -> None:
            await store.append(f"b{run}-{i}", [NewEvent("OrderPlaced", DATA, {"source": "bench"})])

        await _concurrently(WARMUP, clients, append)
        seconds = await _concurrently(count, clients, append)
    return seconds / count * 1e6


def _fresh(url: str, tmp: Path) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp / uuid.uuid4().hex}.db"
    if url.startswith("memory"):
        return f"memory://{uuid.uuid4().hex}"
    return url


def _runner(loop: str) -> Callable[[Coroutine[Any, Any, float]], float]:
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="memory://", help="memory://, sqlite:// or a store URL")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", action="store_true", help="print a cProfile listing")
    parser.add_argument("--sort", default="tottime", help="the listing's order (cumulative, ...)")
    parser.add_argument("--profile-out", default=None, help="also save the profile (pstats)")
    args = parser.parse_args()
    os.environ.setdefault("KRONIKA_LOG_LEVEL", "warning")
    run = _runner(args.loop)
    tmp = Path(tempfile.mkdtemp(prefix="kronika-asgi-"))
    apps, stores = [], []
    for _ in range(args.repeats):
        apps.append(run(_through_app(_fresh(args.url, tmp), args.requests, args.clients, None)))
        stores.append(run(_in_process(_fresh(args.url, tmp), args.requests, args.clients)))
    app, store = min(apps), min(stores)
    print(
        f"{args.url.split(':')[0]}, {args.clients} clients, {args.requests} appends, "
        f"best of {args.repeats} ({args.loop}):"
    )
    print(f"  app    {app:6.1f} µs/request ({1e6 / app:,.0f}/s; median {median(apps):.1f})")
    print(f"  store  {store:6.1f} µs/append  ({1e6 / store:,.0f}/s; median {median(stores):.1f})")
    print(f"  server {app - store:6.1f} µs/request (app - store)")
    if args.profile or args.profile_out:
        profile = cProfile.Profile()
        run(_through_app(_fresh(args.url, tmp), args.requests, args.clients, profile))
        if args.profile_out:
            profile.dump_stats(args.profile_out)
        if args.profile:
            pstats.Stats(profile).sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    main()
