"""Soak (I13): a server and a worker under steady load for about two minutes keep their
memory flat. Marked slow: ``pytest -m slow tests/observability/test_metrics_soak.py``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from metricprocs import Deployment

DURATION = 120.0
WARM_UP = 30.0
GROWTH_LIMIT = 32 * 1024 * 1024
"""Bytes of resident memory either process may gain after warm-up."""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_server_and_worker_memory_stays_flat_under_steady_load(
    deployment: Deployment,
) -> None:
    started = time.monotonic()
    baseline: dict[str, int] = {}
    peak = {"server": 0, "worker": 0}
    pids = {"server": deployment.server.pid(), "worker": deployment.worker.pid()}
    n = 0
    with httpx.Client(timeout=10) as client:
        while (elapsed := time.monotonic() - started) < DURATION:
            for _ in range(20):  # bounded load: 20 appends, one read, two scrapes per round
                n += 1
                answer = client.post(
                    f"{deployment.server_url}/v1/streams/soak-{n % 50}",
                    json={"events": [{"type": "Numbered", "data": {"n": n}}]},
                )
                assert answer.status_code == 200, answer.text
            client.get(f"{deployment.server_url}/v1/streams/soak-1")
            client.get(f"{deployment.server_url}/metrics")
            client.get(f"{deployment.worker_url}/metrics")
            if elapsed >= WARM_UP and not baseline:
                baseline = {name: rss(pid) for name, pid in pids.items()}
            if baseline:
                for name, pid in pids.items():
                    peak[name] = max(peak[name], rss(pid))
            time.sleep(0.15)  # about 150 requests/s: under the default rate limit (200/s)
    growth = {name: peak[name] - baseline[name] for name in pids}
    assert n > 1000, f"only {n} appends in {DURATION} s"
    assert all(g < GROWTH_LIMIT for g in growth.values()), f"RSS growth after warm-up: {growth}"
