"""``kronika backup`` and ``kronika restore``: archives of a store, checked and catalogued.

``kronika backup FILE`` (short for ``kronika backup create FILE``) writes an archive of the
``--url`` store while it stays in use; ``kronika backup verify FILE`` checks one without
restoring it; ``kronika backup list`` shows the store's catalog; ``kronika restore FILE``
loads one into an empty store (or, with ``--merge``, adds it to one that holds data). They
always work on the database, never through ``--server``. Long phases draw a progress bar
on stderr when it is a terminal (``--quiet`` turns it off).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from kronika.cli import options, output
from kronika.cli.context import run, settings_of
from kronika.errors import ValidationError
from kronika.ops import backup as ops
from kronika.store.protocol import EventStore

__all__ = ["app", "restore"]


class _BackupGroup(TyperGroup):
    """``kronika backup FILE`` runs ``kronika backup create FILE``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Put ``create`` in front of arguments that name no subcommand."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["create", *args]
        return list(super().parse_args(ctx, args))


app = typer.Typer(
    cls=_BackupGroup,
    help="Back up a store to an archive (kronika backup FILE), check archives, list backups.",
    no_args_is_help=True,
)
FILE = Annotated[Path, typer.Argument(metavar="FILE", help="The archive file.")]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _store(ctx: typer.Context) -> EventStore:
    """The ``--url`` store, unopened (backups work on the database itself)."""
    return settings_of(ctx).database_store()


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 100_000 else f"{count / 1000:.1f} kB"


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _record_dict(record: ops.BackupRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "path": record.path,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat(),
        "events": record.events,
        "last_position": record.last_position,
        "bytes": record.bytes,
        "sha256": record.sha256,
        "engine": record.engine,
        "verified_at": None if record.verified_at is None else record.verified_at.isoformat(),
    }


def _summary_dict(summary: ops.ArchiveSummary) -> dict[str, Any]:
    return {
        "path": str(summary.path),
        "bytes": summary.bytes,
        "format_version": summary.format_version,
        "kronika": summary.kronika_version,
        "engine": summary.engine,
        "schema_version": summary.schema_version,
        "created_at": summary.created_at.isoformat(),
        "namespaces": list(summary.namespaces),
        "sections": summary.counts,
        "last_position": summary.last_position,
        "sha256": summary.sha256,
    }


@app.command("create")
def create(
    ctx: typer.Context,
    file: FILE,
    *,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    quiet: options.QUIET = False,
    as_json: JSON = False,
) -> None:
    """Write an archive of the store (every namespace) while it stays in use."""
    store = _store(ctx)
    with output.ProgressBar(quiet) as bar:
        record = run(ops.backup(store, file, force=force, progress=bar))
    if as_json:
        output.print_json(_record_dict(record))
        return
    output.out.print(
        f"{record.path}: {record.events} events up to position {record.last_position}, "
        f"{_size(record.bytes)}, read back and verified; sha256 {record.sha256}",
        markup=False,
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: FILE,
    *,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Also mark the archive verified in the catalog of the --url store (exit 1 "
            "if it is not one of its backups).",
        ),
    ] = False,
    quiet: options.QUIET = False,
    as_json: JSON = False,
) -> None:
    """Check an archive without restoring it; exit 1 with the reason when it is bad."""
    try:
        with output.ProgressBar(quiet) as bar:
            summary = ops.verify(file, progress=bar)
    except ValidationError as exc:
        if as_json:
            output.print_json({"path": str(file.absolute()), "ok": False, "error": exc.message})
        else:
            output.print_error(exc)
        raise typer.Exit(1) from None
    recorded = run(ops.record_verified(_store(ctx), summary)) if record else None
    if as_json:
        output.print_json({**_summary_dict(summary), "ok": True, "recorded": recorded})
    else:
        _print_summary(summary)
    if recorded == 0:
        output.err.print(
            f"error: {summary.path} is not a backup in the catalog of "
            f"{settings_of(ctx).shown_url} (or its file changed since)",
            markup=False,
        )
        raise typer.Exit(1)
    if recorded:
        output.err.print(f"recorded as verified in {settings_of(ctx).shown_url}", markup=False)


def _print_summary(summary: ops.ArchiveSummary) -> None:
    rows = {
        "archive": f"{summary.path} ({_size(summary.bytes)})",
        "status": "ok: format, counts and checksums verified",
        "written by": f"Kronika {summary.kronika_version}, format {summary.format_version}",
        "source": f"{summary.engine}, schema version {summary.schema_version}",
        "created": _when(summary.created_at),
        "namespaces": ", ".join(summary.namespaces) or "(none)",
        "last position": str(summary.last_position),
        "sha256": summary.sha256,
    }
    for label, value in rows.items():
        output.out.print(f"{label:<14} {value}", markup=False)
    table = Table("section", "rows")
    for name, count in summary.counts.items():
        table.add_row(name, str(count))
    output.out.print(table)


@app.command("list")
def list_backups(
    ctx: typer.Context,
    *,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 20,
    as_json: JSON = False,
) -> None:
    """List the store's backups from its catalog, newest first."""
    records = run(ops.history(_store(ctx), limit=limit))
    if as_json:
        for record in records:
            output.print_json(_record_dict(record))
        return
    table = Table("finished", "events", "last position", "size", "verified", "file")
    for r in records:
        table.add_row(
            _when(r.finished_at),
            str(r.events),
            str(r.last_position),
            _size(r.bytes),
            _when(r.verified_at),
            r.path,
        )
    output.out.print(table)


def restore(
    ctx: typer.Context,
    file: FILE,
    *,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Add the archive to a store that holds data (refused on any collision).",
        ),
    ] = False,
    without_processing: Annotated[
        bool,
        typer.Option(
            "--without-processing",
            help="Leave out checkpoints, failed keys, documents and replay jobs: processors "
            "start again from the first event.",
        ),
    ] = False,
    quiet: options.QUIET = False,
    as_json: JSON = False,
) -> None:
    """Restore an archive into an empty store (SQLite or PostgreSQL, either direction)."""
    store = _store(ctx)
    with output.ProgressBar(quiet) as bar:
        result = run(
            ops.restore(store, file, merge=merge, processing=not without_processing, progress=bar)
        )
    if as_json:
        output.print_json(
            {"archive": _summary_dict(result.summary), "rows": result.rows, "merged": result.merged}
        )
        return
    where = settings_of(ctx).shown_url
    verb = "merged into" if result.merged else "restored into"
    output.out.print(
        f"{result.summary.path} {verb} {where}: {result.rows.get('events', 0)} events, "
        f"{result.rows.get('streams', 0)} streams, {sum(result.rows.values())} rows in all",
        markup=False,
    )
