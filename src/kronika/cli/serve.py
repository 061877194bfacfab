"""``kronika serve``: the HTTP API on uvicorn, with a graceful shutdown on SIGTERM.

On SIGTERM (or Ctrl-C) the server stops accepting connections, ends its event streams
(clients resume with ``Last-Event-ID`` elsewhere), lets in-flight requests finish for up to
``--drain-timeout`` seconds, cancels what is left, closes the store and exits 0. A request
that was answered was committed before its answer, so a rolling restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Annotated, Any

import typer

from kronika.cli import output
from kronika.errors import ConfigurationError

__all__ = ["serve"]


def serve(  # noqa: PLR0917 - Typer passes every option by keyword anyway
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to bind.", show_default="127.0.0.1"),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port.", show_default="8080")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="KRONIKA_DATABASE_URL",
            help="Store URL (default sqlite:///kronika.db).",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="local or production.", show_default="local"),
    ] = None,
    certfile: Annotated[
        str | None, typer.Option("--certfile", help="PEM certificate to serve HTTPS.")
    ] = None,
    keyfile: Annotated[
        str | None, typer.Option("--keyfile", help="PEM private key of the certificate.")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            help="Seconds to finish in-flight requests on shutdown.",
            show_default="30",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (settings also come from KRONIKA_* environment variables)."""
    from kronika.server.settings import ServerSettings

    root_url = ctx.find_root().params.get("url")
    settings = ServerSettings.from_env(
        os.environ,
        host=host,
        port=port,
        database_url=database_url or root_url,
        mode=mode,
        tls_certfile=certfile,
        tls_keyfile=keyfile,
        drain_timeout=drain_timeout,
    )
    _refuse_unsafe(settings)
    _run(settings)


def _refuse_unsafe(settings: Any) -> None:
    """Exit 2 listing every problem the production mode finds; warn about risky local use."""
    if settings.mode == "production":
        problems = settings.production_problems()
        if problems:
            for problem in problems:
                output.err.print(f"error: production mode: {problem}", markup=False)
            raise typer.Exit(2)
    elif not settings.auth_enabled and not _loopback(settings.host):
        output.err.print(
            f"warning: authentication is off and {settings.host} is not a loopback address: "
            "anyone who can reach it may read and write every stream",
            markup=False,
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(settings: Any) -> None:
    import uvicorn

    from kronika.cli.telemetry import start_telemetry
    from kronika.server.app import create_app
    from kronika.server.protocol import http_protocol

    start_telemetry("kronika-server")
    app = create_app(settings, freeze_heap=True)  # see create_app: the HTTP p99
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        proxy_headers=False,  # the app trusts X-Forwarded-* only from its trusted_proxies
        http=http_protocol(),  # one socket write per response (kronika.server.protocol)
        server_header=False,
        timeout_graceful_shutdown=settings.drain_timeout,
        lifespan="on",
        access_log=False,
        log_config=None,  # uvicorn's loggers go through Kronika's JSON logging
    )
    server = _draining_server(config, app.state.kronika.draining)
    scheme = "https" if settings.tls else "http"
    output.err.print(
        f"kronika serve: {scheme}://{settings.host}:{settings.port} "
        f"({settings.mode} mode, auth {'on' if settings.auth_enabled else 'off'})",
        markup=False,
    )
    server.run()
    if not server.started:
        raise ConfigurationError("the server did not start (see the messages above)")


def _draining_server(config: Any, draining: asyncio.Event) -> Any:
    """A uvicorn server that ends event streams as soon as shutdown begins, and exits 0.

    uvicorn re-raises the signal it caught after a graceful shutdown, so the process would
    die of SIGTERM; a supervisor should see a clean exit from a clean drain. (uvicorn is
    imported here, not at the top, so other commands do not pay for it.)
    """
    import uvicorn

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(draining.set)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
