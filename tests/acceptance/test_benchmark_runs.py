"""The store benchmark runs end to end (on the memory backend, at the tiny scale)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``benchmarks/`` is a package there, not an installed one."""

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W6t")


def test_the_benchmark_runs_on_memory_and_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.store",
            "--backend",
            "memory",
            "--scale",
            "tiny",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for workload in WORKLOADS:
        assert f" {workload} " in proc.stdout, f"{workload} missing from:\n{proc.stdout}"
    report = json.loads(out.read_text())
    assert {r["workload"] for r in report["results"]} == set(WORKLOADS)
    assert all(r["verdict"] in {"PASS", "n/a"} for r in report["results"]), report["results"]
