"""What the checks look at: the server settings, the store, the application and the server.

:func:`doctor_context` gathers it once, before any check runs: it reads the settings from
the ``KRONIKA_*`` environment (as ``kronika serve`` would), asks the store for its schema
version without changing anything (a missing SQLite file is not created, pending
migrations are not applied), opens the store with ``migrate=false`` only when its schema is
current, loads the application's processors (``--app``), and opens an HTTP client for
``--server``. What went wrong on the way is kept as a :class:`Problem` for the checks that
report it (``DR-CONFIG``, ``DR-STORE-REACH``, ``DR-HTTP-REACH``); the checks that need what
is missing are skipped, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kronika.errors import ConfigurationError, KronikaError
from kronika.ops.doctor.model import Severity, Skip
from kronika.ops.doctor.sources import ProcessorData, local_data, remote_data
from kronika.ops.httpclient import server_client, server_config
from kronika.runtime.processor import Processor
from kronika.server.settings import ServerSettings
from kronika.store import DEFAULT_URL, EventStore, open_store
from kronika.store.migrations import SchemaStatus
from kronika.store.options import redact_url

__all__ = ["DoctorContext", "DoctorOptions", "Problem", "Thresholds", "doctor_context"]

DATABASE_VARIABLES = ("KRONIKA_DATABASE_URL", "KRONIKA_DATABASE_URL_FILE")


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Where doctor draws its lines (each has a ``kronika doctor`` option)."""

    cert_warn_days: float = 14.0
    """Warn about a certificate expiring within this many days."""
    max_lag_seconds: float = 60.0
    """A processor whose oldest unhandled event is older than this is lagging."""
    max_lag_events: int = 10_000
    """A processor with more unhandled events than this is lagging."""
    stall_after: float = 300.0
    """A processor with work waiting this long (seconds) may be stalled: doctor looks twice."""
    stall_window: float = 2.0
    """Seconds between doctor's two looks at a possibly stalled processor."""
    dead_letter_age: float = 24 * 3600.0
    """Dead letters waiting longer than this (seconds) are reported as neglected."""
    long_stream: int = 1000
    """Streams with more events than this to read on load should have snapshots."""
    backup_max_age: float = 26 * 3600.0
    """The newest backup must be younger than this (seconds)."""
    verify_max_age: float = 8 * 86400.0
    """Events appended after the newest hash-chain checkpoint may wait this long (seconds)
    for ``kronika verify``: a weekly run, with a day to spare."""
    disk_free_warn: float = 0.10
    """Warn when the SQLite database's filesystem has less than this share free."""
    disk_free_critical: float = 0.02
    """Critical when it has less than this share free."""
    wal_max_bytes: int = 256 * 1024 * 1024
    """A SQLite write-ahead log larger than this means checkpoints cannot finish."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """What to check and how."""

    environ: Mapping[str, str]
    """The environment the settings are read from (``os.environ``)."""
    url: str | None = None
    """The store URL given with ``--url`` (else ``KRONIKA_DATABASE_URL``, else the default)."""
    namespace: str | None = None
    """The namespace to look at (``--namespace``)."""
    mode: str | None = None
    """``local`` or ``production``: judge the settings as that mode (else ``KRONIKA_MODE``)."""
    server: str | None = None
    """A running deployment's base URL (``--server``)."""
    token: str | None = None
    """The bearer token for ``server``."""
    cacert: str | None = None
    """A PEM file of CA certificates to trust for ``server`` (else the system's)."""
    app: str | None = None
    """``package.module:attribute`` naming the application's processors (``--app``)."""
    skip: frozenset[str] = frozenset()
    """Check ids not to run."""
    only: frozenset[str] | None = None
    """Run only these checks (``--security`` chooses the security checks)."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Where the lines are drawn."""
    timeout: float = 10.0
    """Seconds each connection or request may take."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Something that kept doctor from reaching what it should check."""

    severity: Severity
    """How bad it is."""
    title: str
    """One line."""
    found: str
    """The details."""
    action: str
    """What to do."""


@dataclass(slots=True, kw_only=True)
class DoctorContext:
    """Everything the checks look at; built by :func:`doctor_context`."""

    options: DoctorOptions
    """What was asked for."""
    now: datetime
    """When doctor started (UTC)."""
    settings: ServerSettings | None = None
    """The server settings, or ``None`` when they are invalid (``settings_problem``)."""
    settings_problem: Problem | None = None
    """Why the settings could not be read."""
    store_url: str | None = None
    """The store URL checked (``None``: no store, only a server)."""
    engine: str | None = None
    """The store's engine, when its URL could be parsed."""
    sqlite_path: Path | None = None
    """The SQLite database file, for a ``sqlite:///`` store."""
    schema: SchemaStatus | None = None
    """The database's schema status, when it could be read."""
    store: EventStore | None = None
    """The opened store (``migrate=false``), when it is reachable and its schema current."""
    store_problem: Problem | None = None
    """Why the store could not be reached or opened."""
    store_skip: str | None = None
    """Why store checks do not apply (no store configured, or the store is a server)."""
    processors: list[Processor] | None = None
    """The application's processors (``--app``)."""
    http: httpx.AsyncClient | None = None
    """A client for ``--server``, with the token."""
    server_problem: Problem | None = None
    """Why the server could not be reached."""
    _data: ProcessorData | None = None

    @property
    def thresholds(self) -> Thresholds:
        """Where the lines are drawn."""
        return self.options.thresholds

    @property
    def production(self) -> bool:
        """Whether the settings are judged as the ``production`` mode."""
        return self.settings is not None and self.settings.mode == "production"

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment the settings came from."""
        return self.options.environ

    def require_settings(self) -> ServerSettings:
        """The settings; :class:`Skip` when they are invalid."""
        if self.settings is None:
            raise Skip("the server settings are invalid (see DR-CONFIG)")
        return self.settings

    def require_store(self) -> EventStore:
        """The opened store; :class:`Skip` naming why there is none."""
        if self.store is not None:
            return self.store
        raise Skip(self.store_skip or "the store could not be opened (see DR-STORE-REACH)")

    def require_engine(self, engine: str) -> EventStore:
        """The opened store if it is of ``engine``; :class:`Skip` otherwise."""
        if self.engine != engine:
            raise Skip(f"the store is not {engine} ({self.engine or 'none'})")
        return self.require_store()

    def require_server(self) -> httpx.AsyncClient:
        """The HTTP client of ``--server``; :class:`Skip` when none was given or reached."""
        if self.options.server is None:
            raise Skip("no --server given")
        if self.http is None or self.server_problem is not None:
            raise Skip("the server could not be reached (see DR-HTTP-REACH)")
        return self.http

    async def processor_data(self, *, fresh: bool = False) -> ProcessorData:
        """Processor states, failed keys and replay jobs: from the store when it is open,
        else from ``--server``; cached unless ``fresh``."""
        if self._data is None or fresh:
            if self.store is not None:
                self._data = await local_data(self.store, self.processors)
            elif self.options.server is not None:
                self._data = await remote_data(self.require_server())
            else:
                raise Skip(self.store_skip or "the store could not be opened (see DR-STORE-REACH)")
        return self._data


@contextlib.asynccontextmanager
async def doctor_context(options: DoctorOptions) -> AsyncIterator[DoctorContext]:
    """Gather what the checks look at; closes the store and the HTTP client afterwards."""
    ctx = DoctorContext(options=options, now=datetime.now(UTC))
    _read_settings(ctx)
    _load_app(ctx)
    async with contextlib.AsyncExitStack() as stack:
        await _reach_store(ctx, stack)
        await _reach_server(ctx, stack)
        yield ctx


def _read_settings(ctx: DoctorContext) -> None:
    options = ctx.options
    try:
        ctx.settings = ServerSettings.from_env(
            options.environ, mode=options.mode, database_url=options.url
        )
    except ConfigurationError as exc:
        ctx.settings_problem = Problem(
            severity=Severity.CRITICAL,
            title="the server settings are invalid",
            found=exc.message,
            action="fix the named KRONIKA_* variables: kronika serve refuses to start with them",
        )
    ctx.store_url = _store_url(ctx)


def _store_url(ctx: DoctorContext) -> str | None:
    """``--url``, else the environment's, else the default unless only a server is checked."""
    options = ctx.options
    if options.url:
        return options.url
    if any(options.environ.get(name) for name in DATABASE_VARIABLES):
        return ctx.settings.url if ctx.settings else options.environ.get(DATABASE_VARIABLES[0])
    return None if options.server else DEFAULT_URL


def _load_app(ctx: DoctorContext) -> None:
    if ctx.options.app is None:
        return
    from kronika.runtime.loading import load_processors

    ctx.processors = load_processors(ctx.options.app)  # a bad --app is bad input: exit 2


async def _reach_store(ctx: DoctorContext, stack: contextlib.AsyncExitStack) -> None:
    url = ctx.store_url
    if url is None:
        ctx.store_skip = (
            "no store configured (only --server is checked)"
            if ctx.options.server
            else "the store URL could not be read (see DR-CONFIG)"
        )
        return
    scheme = url.partition(":")[0].lower()
    if scheme in {"http", "https"}:
        ctx.engine = "http"
        ctx.store_skip = "the store is a Kronika server: check it with --server"
        return
    try:
        store = _make_store(ctx, url)
    except KronikaError as exc:
        ctx.store_problem = _unreachable(url, exc.message, "the store URL is invalid")
        return
    ctx.engine = store.engine
    path = getattr(store, "path", None) if store.engine == "sqlite" else None
    ctx.sqlite_path = path if isinstance(path, Path) else None
    if ctx.sqlite_path is not None and not ctx.sqlite_path.exists():
        ctx.store_problem = Problem(
            severity=Severity.HIGH,
            title="the SQLite database does not exist",
            found=f"no file at {ctx.sqlite_path}: a server started now would begin with an "
            "empty store",
            action="point KRONIKA_DATABASE_URL (or --url) at the deployment's database file",
        )
        return
    await _open(ctx, store, stack)


def _make_store(ctx: DoctorContext, url: str) -> EventStore:
    options: dict[str, Any] = {"migrate": False}
    if ctx.options.namespace is not None:
        options["namespace"] = ctx.options.namespace
    return open_store(url, **options)


async def _open(ctx: DoctorContext, store: EventStore, stack: contextlib.AsyncExitStack) -> None:
    url = redact_url(ctx.store_url or "")
    try:
        ctx.schema = await _bounded(store.schema_status(), ctx.options.timeout)
        if ctx.schema.current == 0 and store.engine != "memory":
            ctx.store_skip = "the database has no Kronika schema yet (see DR-SCHEMA)"
            return
        if not ctx.schema.up_to_date:
            ctx.store_skip = "the database schema is not current (see DR-SCHEMA)"
            return
        ctx.store = await _bounded(stack.enter_async_context(store), ctx.options.timeout)
    except TimeoutError:
        ctx.store_problem = _unreachable(url, f"no answer within {ctx.options.timeout:g} s")
    except KronikaError as exc:
        ctx.store_problem = _unreachable(url, exc.message)
    if ctx.store is None:
        with contextlib.suppress(KronikaError, OSError):
            await store.close()  # whatever a failed or timed-out open left behind


async def _bounded(awaitable: Any, seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


def _unreachable(url: str, message: str, title: str = "the store cannot be reached") -> Problem:
    return Problem(
        severity=Severity.CRITICAL,
        title=title,
        found=f"{redact_url(url)}: {message}",
        action="check the URL, the credentials and that the database is up and reachable",
    )


async def _reach_server(ctx: DoctorContext, stack: contextlib.AsyncExitStack) -> None:
    server = ctx.options.server
    if server is None:
        return
    config = server_config(
        server, token=ctx.options.token, timeout=ctx.options.timeout, cacert=ctx.options.cacert
    )
    ctx.http = await stack.enter_async_context(server_client(config))
    try:
        answer = await ctx.http.get("/livez")
    except httpx.HTTPError as exc:
        ctx.server_problem = Problem(
            severity=Severity.CRITICAL,
            title="the server cannot be reached",
            found=f"{server}: {_describe(exc)}",
            action="check the URL, DNS, the load balancer and that kronika serve is running",
        )
        return
    if answer.status_code != 200:
        ctx.server_problem = Problem(
            severity=Severity.CRITICAL,
            title="the server is not alive",
            found=f"GET {server}/livez answered {answer.status_code}",
            action="check that the URL points at kronika serve and that the process is healthy",
        )


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
