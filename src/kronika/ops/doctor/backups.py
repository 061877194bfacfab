"""Backups: one was taken, recently, and verified (A13-A15).

``kronika backup`` records each archive it writes in the source store's catalog, and the
time the archive was read back and checked; :func:`kronika.ops.backup.history` lists them,
newest first. Backups taken outside Kronika (``pg_dump``, base backups, volume snapshots)
are not in the catalog: skip this check (``--skip DR-BACKUP``) where those are the plan.
"""

from __future__ import annotations

from typing import Any

from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip, age

__all__ = ["backups"]


async def backups(ctx: DoctorContext) -> list[Finding]:
    """DR-BACKUP: the newest backup is recent and verified."""
    store = ctx.require_store()
    if store.engine == "memory":
        raise Skip("the memory store is not backed up")
    try:
        from kronika.ops.backup import history
    except ImportError:
        raise Skip("this Kronika has no backup catalog (kronika.ops.backup)") from None
    records: list[Any] = list(await history(store))
    production = ctx.production
    if not records:
        return [
            _finding(
                Severity.HIGH if production else Severity.LOW,
                "no backup was ever taken",
                "the store's backup catalog is empty: kronika backup has never completed here",
                "schedule kronika backup (docs/operations/backup.md) and keep the archives "
                "off this host",
            )
        ]
    latest = records[0]
    found = []
    finished = (ctx.now - latest.finished_at).total_seconds()
    if finished > ctx.thresholds.backup_max_age:
        found.append(
            _finding(
                Severity.HIGH if production else Severity.LOW,
                "the newest backup is old",
                f"the newest backup{_where(latest)} finished {age(finished)} ago (limit: "
                f"{age(ctx.thresholds.backup_max_age)})",
                "check the backup schedule (cron, systemd timer) and its logs",
            )
        )
    if getattr(latest, "verified_at", None) is None:
        found.append(
            _finding(
                Severity.MEDIUM if production else Severity.LOW,
                "the newest backup was not verified",
                f"the newest backup{_where(latest)} has no verification recorded",
                "run kronika backup verify FILE --record on it (and a restore drill now and then)",
            )
        )
    return found


def _where(record: Any) -> str:
    path = getattr(record, "path", None)
    return f" ({path})" if path else ""


def _finding(severity: Severity, title: str, found: str, action: str) -> Finding:
    return Finding(check="DR-BACKUP", severity=severity, title=title, found=found, action=action)
