"""Verification: ``kronika verify`` runs often enough that no appended event goes
unverified for long (I10, A13).

A clean ``kronika verify`` run records a checkpoint of the global hash chain at its end
(and every 100,000 events on the way; see :mod:`kronika.store.verify`), so the newest
checkpoint's position is how far the log has been verified. A rerun over a log that did
not grow records nothing new, so the age of the newest checkpoint alone would fault a
quiet store verified every week: what counts is how long the oldest event appended after
it has waited. A run that finds a problem records nothing either, so a log with a problem
is reported here too once it has waited long enough.
"""

from __future__ import annotations

from kronika.errors import ConfigurationError
from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip, age
from kronika.store.integrity import Checkpoint, chains_of

__all__ = ["verification"]

ACTION = (
    "schedule kronika verify --resume at least weekly (docs/operations/verify.md) and read "
    "the report of a run that exits 1: a run that finds a problem records no checkpoint"
)


async def verification(ctx: DoctorContext) -> list[Finding]:
    """DR-VERIFY: no event has waited longer than ``--verify-max-age`` to be verified."""
    store = ctx.require_store()
    try:
        last = await chains_of(store).last_checkpoint()
    except ConfigurationError as exc:
        raise Skip(exc.message) from None
    after = 0 if last is None else last.position
    oldest = await store.read_all(from_position=after + 1, limit=1)
    if not oldest:
        return []  # nothing stored, or nothing appended since the newest checkpoint
    waited = (ctx.now - oldest[0].recorded_at).total_seconds()
    severity = Severity.MEDIUM if ctx.production else Severity.LOW
    if last is None:
        return [_never(severity, waited)]
    if waited <= ctx.thresholds.verify_max_age:
        return []
    return [_overdue(severity, last, waited, ctx)]


def _never(severity: Severity, waited: float) -> Finding:
    return Finding(
        check="DR-VERIFY",
        severity=severity,
        title="the event log was never verified",
        found=f"no hash-chain checkpoint is recorded; the oldest event was appended "
        f"{age(waited)} ago",
        action=ACTION,
    )


def _overdue(severity: Severity, last: Checkpoint, waited: float, ctx: DoctorContext) -> Finding:
    recorded = (
        f", recorded {age((ctx.now - last.created_at).total_seconds())} ago"
        if last.created_at is not None
        else ""
    )
    return Finding(
        check="DR-VERIFY",
        severity=severity,
        title="the event log was not verified recently",
        found=f"events appended after the newest checkpoint (position {last.position}"
        f"{recorded}) have waited {age(waited)} to be verified (limit: "
        f"{age(ctx.thresholds.verify_max_age)})",
        action=ACTION,
    )
