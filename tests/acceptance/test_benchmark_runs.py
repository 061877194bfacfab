"""The benchmarks run end to end at the tiny scale and write the reports they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``benchmarks/`` is a package there, not an installed one."""

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W6t")


def bench(
    module: str, backend: str, out: Path, *, timeout: float = 120
) -> tuple[str, dict[str, Any]]:
    """Run ``python -m benchmarks.MODULE --backend BACKEND --scale tiny --json OUT``; it
    must exit 0. Its stdout and its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--backend", backend, "--scale", "tiny",
         "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return proc.stdout, report


def test_the_benchmark_runs_on_memory_and_reports_every_workload(tmp_path: Path) -> None:
    stdout, report = bench("store", "memory", tmp_path / "bench.json")
    for workload in WORKLOADS:
        assert f" {workload} " in stdout, f"{workload} missing from:\n{stdout}"
    assert {r["workload"] for r in report["results"]} == set(WORKLOADS)
    assert all(r["verdict"] in {"PASS", "n/a"} for r in report["results"]), report["results"]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_runtime_benchmark_runs_and_reports_catch_up_and_latency(
    tmp_path: Path, backend: str
) -> None:
    _, report = bench("runtime", backend, tmp_path / "runtime.json")
    [result] = report["results"]
    assert result["backend"] == backend, result
    assert result["events"] == 1_000
    assert result["read"] > 0
    assert result["docs"] > 0
    assert (result["sql"] is not None) == (backend == "sqlite")
    assert result["latency_ms"]["samples"] == 20
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["verdicts"]["latency"] == "n/a"
    assert report["run"]["scale"]["name"] == "tiny"
    assert report["run"]["command"][:3] == ["python", "-m", "benchmarks.runtime"]


def test_the_http_benchmark_runs_against_a_real_server(tmp_path: Path) -> None:
    """benchmarks.http at the tiny scale on SQLite: it starts ``kronika serve``, measures
    every part and writes its report. Targets are not asserted: timing belongs to the
    benchmark, not to the test suite."""
    _, report = bench("http", "sqlite", tmp_path / "http.json", timeout=300)
    assert [row["part"] for row in report["appends"]] == ["A1", "A16", "A64"]
    for row in report["appends"]:
        assert row["http"]["events"] > 0
        assert row["in_process"]["rate"] > 0
        assert row["ratio"] > 0
    assert report["fanout"]["events"] > 0
    assert report["fanout"]["p99_ms"] > 0
    assert (
        report["overload"]["requests"]
        == report["overload"]["accepted"] + report["overload"]["rejected_429"]
    )
    assert report["overload"]["rejected_429"] > 0, "the overloaded server never answered 429"
    assert any(line.startswith(("PASS", "FAIL")) for line in report["verdicts"])


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_verify_benchmark_runs_and_reports_a_rate(tmp_path: Path, backend: str) -> None:
    """benchmarks.verify at the tiny scale: it loads a store, verifies it clean (the run
    fails otherwise) and reports the rate. The 100k events/s target is not asserted."""
    _, report = bench("verify", backend, tmp_path / "verify.json")
    [result] = report["results"]
    assert result["backend"] == backend
    assert result["events"] == 1_000
    assert result["rate"] > 0
    assert result["resumed"]["events"] == 100
    assert result["verdict"] in {"PASS", "FAIL"}
    assert report["run"]["scale"] == {"name": "tiny", "events": 1_000, "streams": 20, "repeats": 2}


def test_the_backup_benchmark_runs_and_reports_every_step(tmp_path: Path) -> None:
    """benchmarks.backup at the tiny scale on SQLite: load, backup, verify and restore
    through the real CLI, each with its time and peak memory (no targets at this scale)."""
    _, report = bench("backup", "sqlite", tmp_path / "backup.json", timeout=300)
    [result] = report["results"]
    assert result["backend"] == "sqlite" and result["events"] == 2_000
    for step in (result["backup"], result["verify"], result["restores"]["sqlite"]):
        assert step["seconds"] > 0 and step["peak_mib"] > 10
    assert result["archive_bytes"] > 0
    assert set(result["verdicts"].values()) == {"n/a"}
    assert report["run"]["scale"]["events"] == 2_000


def test_a_backend_that_cannot_run_is_an_error_and_exit_1(tmp_path: Path) -> None:
    """The shared run loop reports an unreachable backend in the results and fails."""
    out = tmp_path / "verify.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.verify", "--backend", "postgres", "--scale", "tiny",
         "--postgres-url", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
         "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [result] = json.loads(out.read_text())["results"]
    assert result["backend"] == "postgresql" and result["error"]
