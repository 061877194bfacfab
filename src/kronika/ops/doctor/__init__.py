"""``kronika doctor``: the production checklists as checks with severities and an exit code.

Each check (:data:`CHECKS`) looks at one thing an operator would otherwise check by hand:
the server's settings (``KRONIKA_*``), the store and its database, the processing runtime's
state, and, given ``--server``, the running deployment over HTTP. A check returns
:class:`Finding` objects (id, severity, what was found, what to do, a runbook link) or is
skipped when it does not apply. docs/operations/doctor.md describes every check.

    report = await run_doctor(DoctorOptions(environ=os.environ, server="https://..."))
    for finding in report.failing(Severity.HIGH):
        print(finding.check, finding.title)
"""

from kronika.ops.doctor.checks import CHECKS, check_ids, security_ids
from kronika.ops.doctor.context import DoctorContext, DoctorOptions, Thresholds
from kronika.ops.doctor.model import (
    Check,
    CheckResult,
    Finding,
    Report,
    Severity,
    Skip,
    Status,
)
from kronika.ops.doctor.runner import run_checks, run_doctor

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "DoctorContext",
    "DoctorOptions",
    "Finding",
    "Report",
    "Severity",
    "Skip",
    "Status",
    "Thresholds",
    "check_ids",
    "run_checks",
    "run_doctor",
    "security_ids",
]
