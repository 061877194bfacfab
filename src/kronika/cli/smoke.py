"""``kronika smoke URL``: append, read back, see it projected, check /metrics and /readyz.

Exit status: 0 when every step passed (or was skipped), 1 when one failed, 2 for bad input.
The steps live in :mod:`kronika.ops.smoke`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import options, output
from kronika.cli.context import run, settings_of
from kronika.domain import names
from kronika.errors import ValidationError

__all__ = ["smoke"]

COLOURS = {"ok": "green", "fail": "bold red", "skipped": "dim"}


def smoke(  # noqa: PLR0917 - Typer passes every option by keyword anyway
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Argument(
            metavar="URL",
            help="The server, http(s)://HOST:PORT (else the global --server).",
            show_default=False,
        ),
    ] = None,
    processor: Annotated[
        str | None,
        typer.Option("--processor", help="Wait until this processor has seen the event."),
    ] = None,
    event_type: Annotated[
        str, typer.Option("--type", help="The type of the appended event.")
    ] = "SmokeTested",
    timeout: Annotated[
        float, options.timeout("Seconds for each request and for the processor to catch up.")
    ] = 30.0,
    observability: Annotated[
        bool,
        typer.Option(
            "--observability",
            help="Also check correlation ids and that the append moved the metrics.",
        ),
    ] = False,
    token: options.TOKEN = None,
    cacert: options.CACERT = None,
    as_json: options.JSON_DOCUMENT = False,
) -> None:
    """Smoke-test a running server: append, read back, wait for a processor, check /metrics
    and /readyz; exit 1 when a step fails."""
    from kronika.ops.smoke import SmokeOptions, run_smoke

    settings = settings_of(ctx)
    target = url or settings.server
    if not target:
        raise ValidationError("give the server's URL (or the global --server)", "URL")
    options.http_url(target, "URL")
    names.check_name(event_type, "--type", names.MAX_TYPE_LENGTH)
    result = run(
        run_smoke(
            SmokeOptions(
                url=target,
                token=token or settings.token,
                cacert=cacert,
                processor=processor,
                event_type=event_type,
                timeout=timeout,
                observability=observability,
            )
        )
    )
    if as_json:
        output.print_json(result.to_dict())
    else:
        table = Table("step", "status", "time", "detail", title=f"kronika smoke {result.url}")
        for step in result.steps:
            table.add_row(
                step.name,
                f"[{COLOURS[step.status]}]{step.status}[/]",
                f"{step.seconds * 1000:.0f} ms",
                escape(step.detail),
            )
        output.out.print(table)
        verdict = "PASS" if result.ok else "FAIL"
        output.out.print(f"{verdict}: stream {result.stream}", markup=False)
    if not result.ok:
        raise typer.Exit(1)
