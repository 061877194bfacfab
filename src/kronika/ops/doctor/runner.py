"""Running every check of the table against one context, each bounded in time.

A check that raises :class:`~kronika.ops.doctor.model.Skip` is listed as skipped with
its reason; one that cannot finish (the database went away, the server answered
nonsense, it took longer than ``CHECK_TIMEOUT``) is listed as an error, and the run fails:
doctor does not vouch for what it could not see.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from kronika.errors import KronikaError, ValidationError
from kronika.ops.doctor.checks import CHECKS
from kronika.ops.doctor.context import DoctorContext, DoctorOptions, doctor_context
from kronika.ops.doctor.model import Check, CheckResult, Finding, Report, Skip, Status

__all__ = ["CHECK_TIMEOUT", "run_checks", "run_doctor"]

CHECK_TIMEOUT = 60.0
"""Seconds one check may take (besides a stalled-processor check's own wait)."""


async def run_doctor(options: DoctorOptions) -> Report:
    """Gather the context and run every check; ``ValidationError`` for unknown ``skip`` ids."""
    unknown = sorted(options.skip - {check.id for check in CHECKS})
    if unknown:
        raise ValidationError(
            f"no such check: {', '.join(unknown)} (see kronika doctor --list)", "--skip"
        )
    async with doctor_context(options) as ctx:
        return await run_checks(ctx, CHECKS)


async def run_checks(ctx: DoctorContext, checks: tuple[Check, ...]) -> Report:
    """Run ``checks`` one after another (they share the context's connections)."""
    return Report(results=tuple([await _run(check, ctx) for check in checks]))


async def _run(check: Check, ctx: DoctorContext) -> CheckResult:
    unwanted = _unwanted(check, ctx)
    if unwanted:
        return CheckResult(check=check, status=Status.SKIPPED, reason=unwanted)
    started = time.perf_counter()
    limit = CHECK_TIMEOUT + ctx.thresholds.stall_window
    try:
        async with asyncio.timeout(limit):
            findings = await check.run(ctx)
    except Skip as exc:
        return _done(check, started, Status.SKIPPED, reason=exc.reason)
    except TimeoutError:
        return _done(check, started, Status.ERROR, reason=f"no result within {limit:g} s")
    except KronikaError as exc:
        return _done(check, started, Status.ERROR, reason=exc.message)
    except (OSError, httpx.HTTPError) as exc:
        return _done(check, started, Status.ERROR, reason=f"{type(exc).__name__}: {exc}")
    status = Status.FINDING if findings else Status.OK
    return _done(check, started, status, findings=tuple(findings))


def _unwanted(check: Check, ctx: DoctorContext) -> str | None:
    """Why the options leave ``check`` out, if they do."""
    if check.id in ctx.options.skip:
        return "skipped with --skip"
    if ctx.options.only is not None and check.id not in ctx.options.only:
        return "not a security check (--security)"
    return None


def _done(
    check: Check,
    started: float,
    status: Status,
    *,
    reason: str | None = None,
    findings: tuple[Finding, ...] = (),
) -> CheckResult:
    return CheckResult(
        check=check,
        status=status,
        findings=findings,
        reason=reason,
        seconds=time.perf_counter() - started,
    )
