"""``kronika doctor``: run the production checks and report findings, for people or CI.

Exit status: 0 when nothing at or above ``--fail-on`` was found, 1 when something was (or a
check could not finish), 2 for bad input. The checks live in :mod:`kronika.ops.doctor`.
"""

from __future__ import annotations

import enum
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import options, output
from kronika.cli.context import run, settings_of

if TYPE_CHECKING:
    from kronika.ops.doctor import Report, Severity

__all__ = ["doctor"]

HOUR = 3600.0
DAY = 24 * HOUR
COLOURS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
STATUS_COLOURS = {"ok": "green", "finding": "red", "skipped": "dim", "error": "bold red"}


class Level(enum.StrEnum):
    """A severity, as ``--fail-on`` takes it."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Mode(enum.StrEnum):
    """A server mode, as ``--mode`` takes it."""

    LOCAL = "local"
    PRODUCTION = "production"


def doctor(  # noqa: PLR0917 - Typer passes every option by keyword anyway
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Also check a running deployment at http(s)://HOST:PORT (else the global "
            "--server).",
            show_default=False,
        ),
    ] = None,
    token: options.TOKEN = None,
    cacert: options.CACERT = None,
    app_ref: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="KRONIKA_APP",
            help="The application's processors ('package.module:attribute'): exact lag and "
            "recommendations.",
        ),
    ] = None,
    mode: Annotated[
        Mode | None,
        typer.Option("--mode", help="Judge the settings as this mode (else $KRONIKA_MODE)."),
    ] = None,
    fail_on: Annotated[
        Level,
        typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe."),
    ] = Level.HIGH,
    as_json: options.JSON_DOCUMENT = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every check, passed and skipped ones too.")
    ] = False,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="ID", help="Do not run this check; repeat for several."),
    ] = None,
    list_checks: Annotated[bool, typer.Option("--list", help="List the checks and exit.")] = False,
    security: Annotated[
        bool, typer.Option("--security", help="Run only the security checks (D18).")
    ] = False,
    max_lag_seconds: Annotated[
        float,
        typer.Option(help="Lag: the oldest unhandled event may be this old (s).", min=0),
    ] = 60.0,
    max_lag_events: Annotated[
        int, typer.Option(help="Lag: this many events may wait unhandled.", min=0)
    ] = 10_000,
    stall_after: Annotated[
        float,
        typer.Option(help="A processor with work waiting this long (s) must be moving.", min=0),
    ] = 300.0,
    dead_letter_age: Annotated[
        float,
        typer.Option(help="Dead letters may wait this many hours for an operator.", min=0),
    ] = 24.0,
    cert_warn_days: Annotated[
        float,
        typer.Option(help="Warn about certificates expiring within this many days.", min=0),
    ] = 14.0,
    long_stream: Annotated[
        int,
        typer.Option(help="Streams loading more events than this should have snapshots.", min=1),
    ] = 1000,
    backup_max_age: Annotated[
        float, typer.Option(help="The newest backup may be this many hours old.", min=0)
    ] = 26.0,
    verify_max_age: Annotated[
        float,
        typer.Option(help="Events may wait this many days to be verified (kronika verify).", min=0),
    ] = 8.0,
    timeout: Annotated[
        float, options.timeout("Seconds each connection or request may take.")
    ] = 10.0,
) -> None:
    """Check the configuration, the store, the processors and (with --server) a running
    deployment against the production checklist; exit 1 on findings at --fail-on or worse."""
    from kronika.ops.doctor import DoctorOptions, Thresholds, run_doctor, security_ids

    if list_checks:
        _list(as_json)
        return
    settings = settings_of(ctx)
    chosen = DoctorOptions(
        environ=os.environ,
        url=ctx.find_root().params.get("url"),
        namespace=settings.namespace,
        mode=mode.value if mode else None,
        server=options.http_url(server, "--server").rstrip("/") if server else settings.server,
        token=token or settings.token,
        cacert=cacert,
        app=app_ref,
        skip=frozenset(s.strip().upper() for s in skip or ()),
        only=security_ids() if security else None,
        thresholds=Thresholds(
            cert_warn_days=cert_warn_days,
            max_lag_seconds=max_lag_seconds,
            max_lag_events=max_lag_events,
            stall_after=stall_after,
            dead_letter_age=dead_letter_age * HOUR,
            long_stream=long_stream,
            backup_max_age=backup_max_age * HOUR,
            verify_max_age=verify_max_age * DAY,
        ),
        timeout=timeout,
    )
    report = run(run_doctor(chosen))
    threshold = _severity(fail_on)
    if as_json:
        output.print_json(report.to_dict(threshold))
    else:
        _print(report, threshold, show_all)
    if report.failing(threshold) or report.errors:
        raise typer.Exit(1)


def _severity(level: Level) -> Severity:
    from kronika.ops.doctor import Severity

    return Severity(level.value)


def _list(as_json: bool) -> None:
    from kronika.ops.doctor import CHECKS

    if as_json:
        output.print_json(
            [{"id": c.id, "area": c.area, "title": c.title, "security": c.security} for c in CHECKS]
        )
        return
    table = Table("check", "area", "what it checks", "security")
    for check in CHECKS:
        table.add_row(check.id, check.area, check.title, "yes" if check.security else "")
    output.out.print(table)


def _print(report: Report, threshold: Severity, show_all: bool) -> None:
    findings = report.findings
    if findings:
        output.out.print(_findings_table(report))
    if show_all:
        output.out.print(_checks_table(report))
    for result in report.errors:
        output.err.print(
            f"error: {result.check.id} could not finish: {result.reason}", markup=False
        )
    output.out.print(_summary(report, threshold), markup=False)


def _findings_table(report: Report) -> Table:
    table = Table("severity", "check", "finding", "what to do", title="Findings")
    for f in report.findings:
        subject = f"[{escape(f.subject)}] " if f.subject else ""
        table.add_row(
            f"[{COLOURS[f.severity.value]}]{f.severity.value}[/]",
            escape(f.check),
            f"[bold]{subject}{escape(f.title)}[/]\n{escape(f.found)}",
            f"{escape(f.action)}\n[dim]{escape(f.runbook)}[/]",
        )
    return table


def _checks_table(report: Report) -> Table:
    table = Table("check", "status", "what it checks", "note", title="Checks")
    for r in report.results:
        status = r.status.value
        note = r.reason or (f"{len(r.findings)} finding(s)" if r.findings else "")
        table.add_row(
            escape(r.check.id),
            f"[{STATUS_COLOURS[status]}]{status}[/]",
            escape(r.check.title),
            escape(note),
        )
    return table


def _summary(report: Report, threshold: Severity) -> str:
    counts: dict[str, Any] = report.counts()
    severities = ", ".join(
        f"{counts[s]} {s}" for s in ("critical", "high", "medium", "low") if counts[s]
    )
    found = f"{len(report.findings)} finding(s) ({severities})" if severities else "no findings"
    checks = (
        f"{len(report.results)} checks: {counts['ok']} ok, {counts['finding']} with findings, "
        f"{counts['skipped']} skipped, {counts['error']} could not finish"
    )
    verdict = "FAIL" if report.failing(threshold) or report.errors else "PASS"
    return f"{verdict} (--fail-on {threshold.value}): {found}; {checks}"
