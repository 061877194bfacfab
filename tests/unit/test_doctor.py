"""``kronika doctor`` without I/O: the check table and its documentation agree, severities
order, a report decides pass or fail, and the small judgements are right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kronika.ops.doctor import CHECKS, Check, CheckResult, Finding, Report, Severity, Status
from kronika.ops.doctor.config import _entropy_bits, _weakness
from kronika.ops.doctor.model import age

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "doctor.md"
HEADING = re.compile(r"^### (DR-[A-Z-]+)\s*$", re.MULTILINE)


def test_every_check_has_a_section_in_the_guide_and_every_section_a_check() -> None:
    documented = HEADING.findall(GUIDE.read_text(encoding="utf-8"))
    assert documented == [c.id for c in CHECKS], "keep docs/operations/doctor.md in table order"


def test_check_ids_are_unique_and_well_formed() -> None:
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"DR(-[A-Z]+)+", i) for i in ids)
    assert all(c.run.__doc__ and c.run.__doc__.startswith(c.id) for c in CHECKS)


def test_severities_order_from_critical_to_low() -> None:
    ordered = sorted(Severity, key=lambda s: -s.rank)
    assert [s.value for s in ordered] == ["critical", "high", "medium", "low"]
    assert Severity.CRITICAL.at_least(Severity.HIGH)
    assert Severity.HIGH.at_least(Severity.HIGH)
    assert not Severity.MEDIUM.at_least(Severity.HIGH)


async def _nothing(ctx: object) -> list[Finding]:
    return []


def _result(severity: Severity | None, status: Status = Status.FINDING) -> CheckResult:
    check = Check(id="DR-TEST", area="test", title="A test", run=_nothing)  # type: ignore[arg-type]
    findings = (
        ()
        if severity is None
        else (Finding(check="DR-TEST", severity=severity, title="t", found="f", action="a"),)
    )
    return CheckResult(check=check, status=status, findings=findings)


@pytest.mark.parametrize(
    ("severities", "threshold", "fails"),
    [
        ([Severity.MEDIUM, Severity.LOW], Severity.HIGH, False),
        ([Severity.MEDIUM, Severity.HIGH], Severity.HIGH, True),
        ([Severity.CRITICAL], Severity.CRITICAL, True),
        ([Severity.HIGH], Severity.CRITICAL, False),
        ([Severity.LOW], Severity.LOW, True),
        ([], Severity.LOW, False),
    ],
)
def test_a_report_fails_at_or_above_the_threshold(
    severities: list[Severity], threshold: Severity, fails: bool
) -> None:
    report = Report(results=tuple(_result(s) for s in severities))
    assert bool(report.failing(threshold)) is fails
    assert report.to_dict(threshold)["failed"] is fails
    assert [f.severity for f in report.findings] == sorted(severities, key=lambda s: -s.rank)


def test_a_check_that_could_not_finish_fails_the_report() -> None:
    report = Report(results=(_result(None, Status.ERROR),))
    assert report.errors and report.to_dict(Severity.CRITICAL)["failed"] is True
    assert report.counts()["error"] == 1


def test_findings_link_to_their_checks_section() -> None:
    finding = _result(Severity.LOW).findings[0]
    assert finding.runbook == "docs/operations/doctor.md#dr-test"
    assert finding.to_dict()["runbook"] == finding.runbook


@pytest.mark.parametrize(
    ("secret", "weak"),
    [
        ("x" * 40, True),
        ("MySecretValueForTheServer-2024-production", True),
        ("abc" * 14, True),  # three characters
        ("Tr0ub4dor&3-correct-horse-battery-staple!", False),
        ("5dG9Xq0bV1zL8mNwR3tY7uI2oP4aS6fH-jK_eQ", False),
    ],
)
def test_guessable_secrets_are_recognised(secret: str, weak: bool) -> None:
    assert (_weakness(secret) is not None) is weak


def test_entropy_is_estimated_from_the_characters_used() -> None:
    assert _entropy_bits("a" * 64) == 0
    assert _entropy_bits("0123456789abcdef" * 2) == pytest.approx(128)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (95, "1 min"), (7800, "2 h 10 min"), (200_000, "2 d 7 h")],
)
def test_ages_read_as_an_operator_says_them(seconds: float, text: str) -> None:
    assert age(seconds) == text
