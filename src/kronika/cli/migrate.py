"""``kronika migrate``: apply pending schema migrations, or check that none are pending."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from kronika.cli import output
from kronika.cli.context import run, settings_of
from kronika.store import EventStore
from kronika.store.migrations import SchemaStatus
from kronika.store.options import redact_url

__all__ = ["migrate"]

T = TypeVar("T")


def migrate(
    ctx: typer.Context,
    *,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing; exit 1 if migrations are pending or the schema is newer.",
        ),
    ] = False,
) -> None:
    """Apply pending schema migrations (run it under the migration role)."""
    settings = settings_of(ctx)
    store = settings.database_store(migrate=False)
    where = redact_url(settings.url)
    if check:
        status = run(_then_close(store, store.schema_status()))
        _report(status, where)
        if not status.up_to_date:
            raise typer.Exit(1)
        return
    applied = run(_then_close(store, store.migrate()))
    for migration in applied:
        output.out.print(f"applied {migration.version:04d}_{migration.name}", markup=False)
    output.out.print(f"{where}: schema is up to date ({len(applied)} applied)", markup=False)


def _report(status: SchemaStatus, where: str) -> None:
    if status.too_new:
        output.err.print(
            f"{where}: the schema is at version {status.current}, newer than this Kronika "
            f"knows ({status.latest}); upgrade Kronika",
            markup=False,
        )
    elif status.pending:
        output.err.print(f"{where}: {len(status.pending)} migration(s) pending:", markup=False)
        for migration in status.pending:
            output.err.print(f"  {migration.version:04d}_{migration.name}", markup=False)
    else:
        output.out.print(f"{where}: schema is up to date (version {status.current})", markup=False)


async def _then_close(store: EventStore, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` on the unopened store, then release whatever it connected."""
    try:
        return await work
    finally:
        await store.close()
