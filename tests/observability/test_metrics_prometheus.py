"""A real Prometheus scrapes a running ``kronika serve`` and ``kronika worker``.

Events appended over HTTP must show up, through Prometheus's query API, as the server's
append counter and as the worker's processor position and lag; ``promtool check metrics``
must accept both endpoints' output as it is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
from metricprocs import Deployment, Process, free_port, tool, until

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_the_metrics_of_a_server_and_a_worker(deployment: Deployment) -> None:
    deployment.append("account-1", 1)
    for url in (deployment.server_url, deployment.worker_url):
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert "kronika_head_position" in text
        checked = promtool_check(text)
        assert checked.returncode == 0, f"{url}: {checked.stdout}{checked.stderr}"
    server = httpx.get(f"{deployment.server_url}/metrics", timeout=10).text
    assert 'kronika_events_appended_total{engine="sqlite"} 1.0' in server
    assert 'route="/v1/streams/{stream}"' in server
    assert "account-1" not in server  # stream ids never become label values (E5)


def _config(deployment: Deployment) -> str:
    server = f"127.0.0.1:{deployment.server_port}"
    worker = f"127.0.0.1:{deployment.worker_port}"
    return f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: kronika-server
    static_configs:
      - targets: ["{server}"]
  - job_name: kronika-worker
    static_configs:
      - targets: ["{worker}"]
"""


class Prometheus:
    """A Prometheus server with its own port, config and data directory."""

    def __init__(self, root: Path, config: str) -> None:
        (root / "prometheus.yml").write_text(config, encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = Process(
            [
                tool("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            root / "prometheus.log",
            root,
            {},
        )
        self.process.wait_http(f"{self.url}/-/ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_appends_and_processor_lag(
    deployment: Deployment, tmp_path: Path
) -> None:
    (tmp_path / "prom").mkdir()
    prometheus = Prometheus(tmp_path / "prom", _config(deployment))
    try:
        for n in range(10):
            deployment.append(f"account-{n % 3}", n)

        def appended() -> bool:
            value = prometheus.value('kronika_events_appended_total{job="kronika-server"}')
            return value is not None and value >= 10

        until(appended, 60, "the append counter in Prometheus")

        def caught_up() -> bool:
            position = prometheus.value(
                'kronika_processor_position{job="kronika-worker", processor="ledger"}'
            )
            head = prometheus.value('kronika_head_position{job="kronika-worker"}')
            return position is not None and head == 10 and position == head

        until(caught_up, 60, "the worker's processor position at the head")
        lag = prometheus.value(
            'kronika_processor_lag_events{job="kronika-worker", processor="ledger"}'
        )
        assert lag == 0
        assert prometheus.value('kronika_processor_lag_seconds{job="kronika-worker"}') == 0
        assert prometheus.value('up{job="kronika-server"}') == 1
        rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert {"KronikaInstanceDown", "KronikaProjectionLagHigh"} <= names
    finally:
        prometheus.process.stop()
