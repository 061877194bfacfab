"""Targets, verdicts and the two outputs of a run: a Rich table and a JSON document."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import WORKLOADS, Sample, best, median_rate

__all__ = ["NO_MISSES", "TARGETS", "Result", "ratio_text", "render", "to_json", "to_markdown"]

TARGETS: dict[str, dict[str, float]] = {
    "postgresql": {"W1": 0.75, "W2": 0.75, "W3": 0.8, "W4": 0.8, "W5": 0.8, "W6": 0.7, "W6t": 0.7},
    "sqlite": {"W1": 0.85, "W4": 0.8, "W5": 0.8, "W6": 2.0},
}
"""Backend -> workload -> the lowest acceptable Kronika/raw ratio of events per second."""

NO_MISSES = frozenset({"W6t"})
"""Workloads where Kronika's live subscriber must miss nothing (on every backend)."""


@dataclass(kw_only=True)
class Result:
    """Every measurement of one workload on one backend."""

    backend: str
    workload: str
    has_raw: bool = True
    kronika: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)
    kronika_error: str | None = None
    raw_error: str | None = None

    @property
    def target(self) -> float | None:
        """The minimum Kronika/raw ratio, if this workload has one on this backend."""
        return TARGETS.get(self.backend, {}).get(self.workload)

    @property
    def ratio(self) -> float | None:
        """Best Kronika events/s over best raw events/s (None if either side failed)."""
        if self.kronika_error or self.raw_error:
            return None
        k, r = best(self.kronika), best(self.raw)
        return None if k is None or r is None else k.rate / r.rate

    @property
    def missed(self) -> int | None:
        """W6t: the most events Kronika's subscriber missed in any measurement."""
        values = [s.missed for s in self.kronika if s.missed is not None]
        return max(values) if values else None

    @property
    def raw_missed(self) -> int | None:
        """W6t: the most events the raw naive reader missed in any measurement."""
        values = [s.missed for s in self.raw if s.missed is not None]
        return max(values) if values else None

    def failures(self) -> list[str]:
        """Why this result misses its targets (empty when it meets them)."""
        problems: list[str] = []
        if self.kronika_error or (self.has_raw and self.raw_error):
            return ["error"]
        if self.target is not None and self.ratio is not None and self.ratio < self.target:
            problems.append(f"{self.ratio:.2f}x < {self.target:g}x")
        duplicates = max((s.duplicates or 0 for s in self.kronika), default=0)
        if self.workload in NO_MISSES and (self.missed or duplicates):
            problems.append(f"missed {self.missed}, duplicates {duplicates}")
        return problems

    @property
    def verdict(self) -> str:
        """PASS, FAIL, ERROR or n/a (nothing to check)."""
        if self.kronika_error or (self.has_raw and self.raw_error):
            return "ERROR"
        checked = self.target is not None or self.workload in NO_MISSES
        if not checked or not self.kronika or (self.target is not None and self.ratio is None):
            return "n/a"
        return "FAIL" if self.failures() else "PASS"


def ratio_text(ratio: float | None) -> str:
    """The ratio rounded down to 2 decimals, so a ratio shown at a target never fails it."""
    return "n/a" if ratio is None else f"{math.floor(ratio * 100) / 100:.2f}x"


def _target_text(result: Result) -> str:
    target = f">= {result.target:g}x" if result.target is not None else "-"
    if result.workload in NO_MISSES:
        return f"{target}, 0 missed" if result.target is not None else "0 missed"
    return target


def _rate_cell(samples: list[Sample], error: str | None, absent: str) -> str:
    if error:
        return "[red]error[/]"
    top = best(samples)
    if top is None:
        return absent
    median = median_rate(samples)
    spread = f" [dim]({median:,.0f})[/]" if len(samples) > 1 and median is not None else ""
    return f"{top.rate:,.0f}{spread}"


def _notes(result: Result) -> str:
    notes: list[str] = []
    if result.workload == "W6t":
        if result.missed is not None:
            lag = max((s.lag or 0.0 for s in result.kronika), default=0.0)
            notes.append(f"Kronika subscriber missed {result.missed} (caught up {lag:.2f}s after)")
        if result.raw_missed is not None:
            notes.append(f"raw naive reader missed {result.raw_missed}")
    for side, error in (("Kronika", result.kronika_error), ("raw", result.raw_error)):
        if error:
            notes.append(f"{side}: {error[:160]}")
    return "; ".join(notes)


VERDICT_STYLE = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red", "n/a": "dim"}


def render(results: list[Result], console: Console, title: str, caption: str = "") -> None:
    """Print the results as one table."""
    table = Table(title=title, caption=caption or None, show_lines=False)
    for name, justify in (
        ("Backend", "left"),
        ("Workload", "left"),
        ("Kronika ev/s", "right"),
        ("Raw ev/s", "right"),
        ("Kronika/raw", "right"),
        ("Target", "right"),
        ("Result", "left"),
        ("Notes", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in results:
        target = _target_text(r)
        raw_absent = "n/a" if not r.has_raw else "-"
        table.add_row(
            r.backend,
            r.workload,
            _rate_cell(r.kronika, r.kronika_error, "unavailable"),
            _rate_cell(r.raw, r.raw_error, raw_absent),
            ratio_text(r.ratio),
            target,
            f"[{VERDICT_STYLE[r.verdict]}]{r.verdict}[/]",
            _notes(r),
        )
    console.print(table)


def _side(samples: list[Sample], error: str | None) -> dict[str, Any]:
    top = best(samples)
    return {
        "best_events_per_second": top.rate if top else None,
        "median_events_per_second": median_rate(samples),
        "error": error,
        "samples": [{**asdict(s), "events_per_second": s.rate} for s in samples],
    }


def to_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    """The whole run as a JSON-serialisable document."""
    return {
        **meta,
        "workloads": WORKLOADS,
        "results": [
            {
                "backend": r.backend,
                "workload": r.workload,
                "kronika": _side(r.kronika, r.kronika_error),
                "raw": _side(r.raw, r.raw_error) if r.has_raw else None,
                "ratio": r.ratio,
                "target": r.target,
                "kronika_missed": r.missed,
                "raw_missed": r.raw_missed,
                "verdict": r.verdict,
                "failures": r.failures(),
            }
            for r in results
        ],
    }


def _plain_rate(samples: list[Sample], error: str | None, absent: str) -> str:
    if error:
        return "error"
    top, median = best(samples), median_rate(samples)
    if top is None:
        return absent
    return f"{top.rate:,.0f}" + (f" ({median:,.0f})" if len(samples) > 1 and median else "")


def to_markdown(results: list[Result]) -> str:
    """The results as a Markdown table: best (median) events/s per side."""
    lines = [
        "| backend | workload | Kronika ev/s | raw ev/s | Kronika/raw | target | result | notes |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in results:
        ratio = ratio_text(r.ratio)
        cells = [
            r.backend, r.workload,
            _plain_rate(r.kronika, r.kronika_error, "unavailable"),
            _plain_rate(r.raw, r.raw_error, "n/a" if not r.has_raw else "-"),
            ratio, _target_text(r), r.verdict, _notes(r).replace("|", "/"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
