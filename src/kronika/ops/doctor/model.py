"""What ``kronika doctor`` reports: checks, their findings, severities and the whole report.

A :class:`Check` is one registered function with a stable id (``DR-TLS``); it returns the
:class:`Finding` objects it made (none: the check passed) or raises :class:`Skip` when it
does not apply (no PostgreSQL, no ``--server``). Each finding carries the check's id, so
the runbook link (``docs/operations/doctor.md#dr-tls``) and any ``--skip`` work per check.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kronika.ops.doctor.context import DoctorContext

__all__ = [
    "DOCS",
    "Check",
    "CheckResult",
    "Finding",
    "Report",
    "Severity",
    "Skip",
    "Status",
    "age",
]

DOCS = "docs/operations/doctor.md"
"""The page that explains every check; each finding links to its check's anchor there."""


class Severity(enum.Enum):
    """How urgent a finding is, from ``critical`` (fix before going live) to ``low`` (advice)."""

    CRITICAL = "critical"
    """Data loss, an open door, or an outage is likely: fix before serving traffic."""
    HIGH = "high"
    """A real risk or a degraded service: fix soon (the default ``--fail-on``)."""
    MEDIUM = "medium"
    """Worth fixing: weaker than it should be, or heading for trouble."""
    LOW = "low"
    """Advice."""

    @property
    def rank(self) -> int:
        """4 for critical down to 1 for low: higher is worse."""
        return _RANKS[self]

    def at_least(self, other: Severity) -> bool:
        """Whether this severity is ``other`` or worse."""
        return self.rank >= other.rank


_RANKS = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1}


class Status(enum.Enum):
    """What happened to one check."""

    OK = "ok"
    """It ran and found nothing."""
    FINDING = "finding"
    """It ran and found something."""
    SKIPPED = "skipped"
    """It does not apply here (the reason says why)."""
    ERROR = "error"
    """It could not finish (the reason says why): doctor cannot vouch for it."""


class Skip(Exception):
    """Raised by a check that does not apply; the message is the reason shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing a check found wrong, and what to do about it."""

    check: str
    """The id of the check that found it (``DR-TLS``)."""
    severity: Severity
    """How urgent it is."""
    title: str
    """One line: what is wrong."""
    found: str
    """What was found, with the figures."""
    action: str
    """What to do about it."""
    subject: str | None = None
    """What it concerns, when a check reports on several things (a processor, a file)."""

    @property
    def runbook(self) -> str:
        """Where the check is explained: ``docs/operations/doctor.md#<id>``."""
        return f"{DOCS}#{self.check.lower()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "check": self.check,
            "severity": self.severity.value,
            "title": self.title,
            "subject": self.subject,
            "found": self.found,
            "action": self.action,
            "runbook": self.runbook,
        }


CheckFunction = Callable[["DoctorContext"], Awaitable[list[Finding]]]
"""A check: looks at the context, returns its findings (or raises :class:`Skip`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One registered check."""

    id: str
    """Stable id, ``DR-<AREA>-<WHAT>``; also the anchor of its section in the docs."""
    area: str
    """What it looks at: ``configuration``, ``store``, ``processors``, ``server``."""
    title: str
    """What it checks, in a few words."""
    run: CheckFunction
    """The function doing it."""
    security: bool = False
    """Whether it is one of the security checks (``kronika doctor --security``, D18)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One check's outcome."""

    check: Check
    """The check."""
    status: Status
    """Ok, finding, skipped or error."""
    findings: tuple[Finding, ...] = ()
    """What it found (empty unless ``status`` is ``FINDING``)."""
    reason: str | None = None
    """Why it was skipped or could not finish."""
    seconds: float = 0.0
    """How long it took."""

    @property
    def worst(self) -> Severity | None:
        """The most severe finding, if any."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "id": self.check.id,
            "area": self.check.area,
            "title": self.check.title,
            "status": self.status.value,
            "severity": self.worst.value if self.worst else None,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Every check's outcome, in the order the checks ran."""

    results: tuple[CheckResult, ...]
    """One per check that was run (``--skip``-ped ones are listed as skipped)."""

    @property
    def findings(self) -> list[Finding]:
        """Every finding, most severe first (stable within a severity)."""
        found = [f for r in self.results for f in r.findings]
        return sorted(found, key=lambda f: -f.severity.rank)

    @property
    def errors(self) -> list[CheckResult]:
        """The checks that could not finish."""
        return [r for r in self.results if r.status is Status.ERROR]

    def failing(self, threshold: Severity) -> list[Finding]:
        """The findings at ``threshold`` or worse."""
        return [f for f in self.findings if f.severity.at_least(threshold)]

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status, and findings of each severity."""
        counts = {status.value: 0 for status in Status}
        for result in self.results:
            counts[result.status.value] += 1
        for severity in Severity:
            counts[severity.value] = sum(f.severity is severity for f in self.findings)
        return counts

    def to_dict(self, threshold: Severity) -> dict[str, Any]:
        """JSON-ready values: a summary, then every check with its findings."""
        return {
            "fail_on": threshold.value,
            "failed": bool(self.failing(threshold) or self.errors),
            "counts": self.counts(),
            "checks": [r.to_dict() for r in self.results],
        }


def age(seconds: float) -> str:
    """``95`` -> ``1 min``, ``7800`` -> ``2 h 10 min``, ``200000`` -> ``2 d 7 h``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
