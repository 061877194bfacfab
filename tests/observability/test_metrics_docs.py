"""The metrics module, its reference page, the alert rules and the dashboard agree.

Every metric defined in ``kronika.observability.metrics`` is documented in
docs/reference/metrics.md and every documented ``kronika_*`` name exists; the alert rules
and the Grafana dashboard use only documented metrics, and the dashboard shows them all;
each alert has a severity and a runbook link to a section that exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kronika.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reference" / "metrics.md"
RUNBOOK = ROOT / "docs" / "operations" / "alerts.md"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "kronika.json"
NAME = re.compile(r"\bkronika_[a-z_]+[a-z]")
SUFFIXES = ("_bucket", "_count", "_sum")


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in metrics.METRICS:
            return name.removesuffix(suffix)
    return name


def _documented() -> dict[str, tuple[str, str]]:
    """Metric name -> (type, labels) from the doc's table rows."""
    rows = re.findall(
        r"^\| `(kronika_\w+)` \| (\w+) \|([^|]*)\|", DOC.read_text(encoding="utf-8"), re.M
    )
    return {name: (kind, labels.strip()) for name, kind, labels in rows}


def test_every_metric_is_documented_with_its_type() -> None:
    documented = _documented()
    assert {n: documented.get(n, ("missing", ""))[0] for n in metrics.METRICS} == metrics.METRICS


def test_every_documented_metric_exists() -> None:
    assert sorted(set(_documented()) - set(metrics.METRICS)) == []
    mentioned = {_base(n) for n in NAME.findall(DOC.read_text(encoding="utf-8"))}
    assert sorted(mentioned - set(metrics.METRICS)) == []


def test_documented_labels_are_the_real_ones() -> None:
    for name, (_, labels) in _documented().items():
        assert set(re.findall(r"`(\w+)`", labels)) == set(metrics.LABELS[name]), name


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_use_documented_metrics_and_link_to_their_runbook() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        for title in re.findall(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    }
    rules = _alert_rules()
    assert len(rules) >= 8
    for rule in rules:
        used = {_base(n) for n in NAME.findall(rule["expr"])}
        assert used <= set(metrics.METRICS), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/operations/alerts.md#"), url
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no section for {url}"


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_shows_every_documented_metric_and_nothing_else() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {_base(n) for e in _exprs(dashboard) for n in NAME.findall(e)}
    assert sorted(used - set(metrics.METRICS)) == []
    assert sorted(set(metrics.METRICS) - used) == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_no_metric_has_an_unbounded_label(name: str) -> None:
    unbounded = {"stream", "event_id", "key", "user", "tenant", "principal", "path", "id"}
    assert not set(metrics.LABELS[name]) & unbounded
