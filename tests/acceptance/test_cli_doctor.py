"""``kronika doctor`` as an operator and a CI job run it: the table, ``--json``, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

KRONIKA = Path(sys.executable).with_name("kronika")
PRODUCTION = {"KRONIKA_MODE": "production"}


def doctor(
    *args: str, url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kronika [--url URL] doctor ARGS`` in a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KRONIKA_", "OTEL_"))}
    command = [str(KRONIKA), *(["--url", url] if url else []), "doctor", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    done = subprocess.run(
        [str(KRONIKA), "--url", url, "migrate"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return url


def test_a_healthy_local_store_passes(tmp_path: Path) -> None:
    result = doctor(url=migrated(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PASS (--fail-on high):")
    assert "0 could not finish" in last


def test_findings_are_a_table_with_what_to_do_and_the_runbook(tmp_path: Path) -> None:
    env = {**PRODUCTION, "KRONIKA_CORS_ORIGINS": "*", "KRONIKA_RATE_LIMIT": "0"}
    result = doctor(url=migrated(tmp_path), env=env)
    assert result.returncode == 1
    out = result.stdout
    assert "Findings" in out and "what to do" in out
    assert "CORS allows any origin" in out
    assert "docs/operations/doctor.md#dr-cors" in out
    assert out.index("critical") < out.index("high")  # most severe first
    assert out.strip().splitlines()[-1].startswith("FAIL (--fail-on high):")


def test_fail_on_chooses_the_severity_that_fails_the_run(tmp_path: Path) -> None:
    proxy = {"KRONIKA_TRUSTED_PROXIES": "10.0.0.5"}  # TLS ends at the proxy
    env = {**PRODUCTION, **proxy, "KRONIKA_RATE_LIMIT": "0"}  # high findings, no critical
    url = migrated(tmp_path)
    assert doctor(url=url, env=env).returncode == 1
    assert doctor("--fail-on", "critical", url=url, env=env).returncode == 0
    quiet = doctor("--skip", "DR-RATE-LIMIT", "--skip", "dr-backup", url=url, env=env)
    assert quiet.returncode == 0, quiet.stdout
    # memory:// is low advice in local mode: it fails only a run that fails on low
    assert doctor(url="memory://").returncode == 0
    assert doctor("--fail-on", "low", url="memory://").returncode == 1


def test_json_lists_every_check_with_its_status(tmp_path: Path) -> None:
    result = doctor("--json", "--skip", "DR-TRACING", url="memory://", env=PRODUCTION)
    assert result.returncode == 1  # memory in production is critical
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["fail_on"] == "high" and report["failed"] is True
    checks = {c["id"]: c for c in report["checks"]}
    listed = json.loads(doctor("--list", "--json").stdout)
    assert list(checks) == [c["id"] for c in listed]
    engine = checks["DR-STORE-ENGINE"]
    assert (engine["status"], engine["severity"]) == ("finding", "critical")
    [finding] = engine["findings"]
    assert finding["runbook"] == "docs/operations/doctor.md#dr-store-engine"
    assert {"title", "found", "action", "subject", "check"} <= set(finding)
    assert checks["DR-TRACING"]["reason"] == "skipped with --skip"
    assert checks["DR-DB-ROLE"]["status"] == "skipped"
    assert "PostgreSQL" in checks["DR-DB-ROLE"]["reason"]
    assert checks["DR-SCHEMA"]["status"] == "ok"
    assert report["counts"]["critical"] >= 1


def test_security_runs_only_the_security_checks() -> None:
    result = doctor("--security", "--json", url="memory://", env=PRODUCTION)
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["DR-SCHEMA"]["reason"] == "not a security check (--security)"
    assert checks["DR-STORE-ENGINE"]["status"] == "finding"
    listed = json.loads(doctor("--list", "--json").stdout)
    security = {c["id"] for c in listed if c["security"]}
    assert {"DR-AUTH", "DR-TLS", "DR-DB-ROLE", "DR-HTTP-TLS"} <= security
    assert all(checks[i]["reason"] != "not a security check (--security)" for i in security)


def test_all_lists_passed_and_skipped_checks(tmp_path: Path) -> None:
    result = doctor("--all", url=migrated(tmp_path))
    assert "Checks" in result.stdout
    assert "DR-HTTP-READY" in result.stdout and "no --server given" in result.stdout


def test_bad_input_exits_2_naming_it(tmp_path: Path) -> None:
    unknown = doctor("--skip", "DR-NOPE", url="memory://")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: ") and "--skip" in unknown.stderr
    assert "DR-NOPE" in unknown.stderr
    app = doctor("--app", "no_such_module_here:PROCESSORS", url="memory://")
    assert app.returncode == 2
    assert "--app" in app.stderr and "Traceback" not in app.stderr
    assert doctor("--fail-on", "severe", url="memory://").returncode == 2
    server = doctor("--server", "ftp://example.com", url="memory://")
    assert server.returncode == 2 and "--server" in server.stderr


def test_verify_max_age_bounds_how_long_events_wait_for_kronika_verify(tmp_path: Path) -> None:
    from kronika import NewEvent
    from kronika.sync import open_store

    url = migrated(tmp_path)
    with open_store(url) as store:
        store.append("order-1", [NewEvent("OrderPlaced", {"n": 1})])

    def dr_verify(*args: str) -> dict[str, Any]:
        result = doctor("--json", *args, url=url, env=PRODUCTION)
        checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
        return checks["DR-VERIFY"]

    never = dr_verify()
    assert (never["status"], never["severity"]) == ("finding", "medium")
    assert never["findings"][0]["runbook"] == "docs/operations/doctor.md#dr-verify"
    verified = subprocess.run(
        [str(KRONIKA), "--url", url, "verify", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert dr_verify("--verify-max-age", "0")["status"] == "ok"  # nothing waits
    with open_store(url) as store:
        store.append("order-1", [NewEvent("OrderPlaced", {"n": 2})])
    assert dr_verify()["status"] == "ok"  # within the default 8 days
    assert dr_verify("--verify-max-age", "0")["status"] == "finding"
    negative = doctor("--verify-max-age", "-1", url=url)
    assert negative.returncode == 2 and "--verify-max-age" in negative.stderr


def test_doctor_creates_no_database(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = doctor(url=f"sqlite:///{path}")
    assert result.returncode == 1
    assert "the SQLite database does not exist" in result.stdout
    assert not path.exists()
