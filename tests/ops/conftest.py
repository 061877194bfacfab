"""Running one ``kronika doctor`` check against a real configuration and store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from kronika.ops.doctor import CHECKS, CheckResult, DoctorOptions, Thresholds, run_checks
from kronika.ops.doctor.context import doctor_context

RunCheck = Callable[..., Awaitable[CheckResult]]


async def run_check(
    check_id: str,
    environ: Mapping[str, str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    **options: Any,
) -> CheckResult:
    """Gather the context as ``kronika doctor`` does and run the one check ``check_id``."""
    chosen = tuple(c for c in CHECKS if c.id == check_id)
    assert chosen, f"no check {check_id}"
    config = DoctorOptions(
        environ=dict(environ or {}), thresholds=thresholds or Thresholds(), **options
    )
    async with doctor_context(config) as ctx:
        [result] = (await run_checks(ctx, chosen)).results
    return result


@pytest.fixture
def check() -> RunCheck:
    """``await check("DR-TLS", {"KRONIKA_...": ...}, url=..., thresholds=...)``."""
    return run_check
