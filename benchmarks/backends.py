"""Where each measurement runs: a fresh database per measurement, removed afterwards."""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.common import Sample, Scale
from benchmarks.kronika_side import run_kronika
from kronika import EventStore, open_store

__all__ = ["DEFAULT_POSTGRES_URL", "Backend", "MemoryBackend", "PostgresBackend", "SQLiteBackend"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class Backend(abc.ABC):
    """One storage engine: Kronika on it, and (except memory) its raw baseline."""

    name: str
    has_raw: bool = True

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        """Store options passed to ``open_store`` on the Kronika side."""

    @abc.abstractmethod
    def fresh_kronika_url(self, label: str) -> contextlib.AbstractAsyncContextManager[str]:
        """A store URL on a database nobody has used, cleaned up on exit."""

    @abc.abstractmethod
    async def run_raw(self, workload: str, scale: Scale, label: str) -> Sample:
        """Run the raw baseline of ``workload`` on a fresh database."""

    async def run_kronika(self, workload: str, scale: Scale, label: str) -> Sample:
        """Run ``workload`` through ``kronika.open_store`` on a fresh database."""
        async with self.fresh_kronika_url(label) as url:
            return await run_kronika(workload, url, scale, self.options)

    @contextlib.asynccontextmanager
    async def loaded_store(
        self,
        label: str,
        load: Callable[[EventStore], Awaitable[None]],
        events: int,
        say: Callable[[str], None],
    ) -> AsyncIterator[tuple[str, EventStore]]:
        """A fresh Kronika store on this backend, open, after ``load`` filled it with
        ``events`` events (untimed: how long it took is only said); its URL and the store."""
        async with self.fresh_kronika_url(label) as url, open_store(url, **self.options) as store:
            begin = time.perf_counter()
            await load(store)
            say(f"loaded {events:,} events in {time.perf_counter() - begin:.1f}s")
            yield url, store

    def teller(self, log: Console) -> Callable[[str], None]:
        """Print a progress line about this backend on ``log``."""
        return lambda text: log.print(f"  {self.name} {text}")

    async def unavailable(self) -> tuple[str | None, str | None]:
        """Why the Kronika side and the raw side cannot run here (None when they can)."""
        async with self.fresh_kronika_url("probe") as url:
            try:
                async with open_store(url, **self.options) as store:
                    await store.head_position()
            except Exception as exc:  # any failure means "not usable yet"
                return f"Kronika {self.name} backend unavailable: {type(exc).__name__}: {exc}", None
        return None, None

    def describe(self) -> dict[str, Any]:
        """What the JSON report records about this backend."""
        return {"name": self.name, "options": self.options}

    @abc.abstractmethod
    async def close(self) -> None:
        """Remove whatever is left."""


class MemoryBackend(Backend):
    """``memory://NAME``: no raw baseline, ratios are n/a. For smoke tests."""

    name = "memory"
    has_raw = False

    @contextlib.asynccontextmanager
    async def fresh_kronika_url(self, label: str) -> AsyncIterator[str]:
        # A unique name: a bare ``memory://`` is currently shared within the process.
        yield f"memory://bench-{label}-{uuid.uuid4().hex}"

    async def run_raw(self, workload: str, scale: Scale, label: str) -> Sample:
        raise NotImplementedError("memory has no raw baseline")

    async def close(self) -> None:
        """Nothing to remove: every store was private to its measurement."""


class SQLiteBackend(Backend):
    """Database files in a temporary directory, one per measurement."""

    name = "sqlite"

    def __init__(self, options: dict[str, Any]) -> None:
        # The raw baseline runs synchronous=FULL: say so on the Kronika side too.
        super().__init__({"synchronous": "full", **options})
        self.root = Path(tempfile.mkdtemp(prefix="kronika-bench-"))

    def _path(self, label: str) -> Path:
        return self.root / f"{label}-{uuid.uuid4().hex[:8]}.db"

    @staticmethod
    def _remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def fresh_kronika_url(self, label: str) -> AsyncIterator[str]:
        path = self._path(f"kronika-{label}")
        try:
            yield f"sqlite:///{path}"
        finally:
            self._remove(path)

    async def run_raw(self, workload: str, scale: Scale, label: str) -> Sample:
        from benchmarks.raw_sqlite import run_raw_sqlite

        path = self._path(f"raw-{label}")
        try:
            return run_raw_sqlite(workload, path, scale)
        finally:
            self._remove(path)

    def describe(self) -> dict[str, Any]:
        import sqlite3

        return {**super().describe(), "sqlite_version": sqlite3.sqlite_version}

    async def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class PostgresBackend(Backend):
    """A fresh schema per measurement on one server: ``?schema=`` for Kronika."""

    name = "postgresql"

    def __init__(self, options: dict[str, Any], url: str | None = None) -> None:
        # A pool of at least 8 connections for the 8 W6 writers, opened before timing.
        super().__init__({"pool_min_size": 8, "pool_max_size": 10, **options})
        self.url = url or os.environ.get(
            "KRONIKA_BENCH_POSTGRES_URL",
            os.environ.get("KRONIKA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        )
        self.run_id = uuid.uuid4().hex[:8]
        self.server_version = ""

    def _schema(self, side: str, label: str) -> str:
        return f"bench_{self.run_id}_{side}_{label}_{uuid.uuid4().hex[:4]}".lower()

    @contextlib.asynccontextmanager
    async def fresh_kronika_url(self, label: str) -> AsyncIterator[str]:
        from benchmarks.raw_postgres import drop_schema

        schema = self._schema("k", label)
        separator = "&" if "?" in self.url else "?"
        try:
            yield f"{self.url}{separator}schema={schema}"
        finally:
            await drop_schema(self.url, schema)

    async def run_raw(self, workload: str, scale: Scale, label: str) -> Sample:
        from benchmarks.raw_postgres import create_schema, drop_schema, run_raw_postgres

        schema = self._schema("r", label)
        try:
            await create_schema(self.url, schema)
            return await run_raw_postgres(workload, self.url, schema, scale)
        finally:
            await drop_schema(self.url, schema)

    async def unavailable(self) -> tuple[str | None, str | None]:
        try:
            import psycopg

            async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=5) as conn:
                self.server_version = str(conn.info.server_version)
        except Exception as exc:  # no driver or no server: nothing can run
            reason = f"PostgreSQL at {self.url} unavailable: {type(exc).__name__}: {exc}"
            return reason, reason
        return await super().unavailable()

    def describe(self) -> dict[str, Any]:
        from kronika.store.options import redact_url

        return {
            **super().describe(),
            "url": redact_url(self.url),
            "server_version": self.server_version,
        }

    async def close(self) -> None:
        """Nothing to remove: every schema is dropped after its measurement."""
