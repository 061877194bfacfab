"""Retention policies: what ``kronika retention`` removes, and how often a worker runs it.

Every setting has an environment variable, ``KRONIKA_RETENTION_`` plus its name in
capitals (``jobs_days`` -> ``KRONIKA_RETENTION_JOBS_DAYS``), and the CLI overrides any of
them with ``--set NAME=VALUE``. Ages are in days (fractions allowed) or ``never``
(retain). A bad value, or a ``KRONIKA_RETENTION_*`` variable that names no setting, is an
error naming the variable (or ``--set``): a typo must not turn a policy off quietly.

The event log is not a category of its own: retention truncates only the events that a
stream's ``max_age`` / ``max_count`` (set by the operator) already hide from reads.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from kronika.errors import ConfigurationError, ValidationError
from kronika.store.options import parse_bool

__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "Category",
    "RetentionPolicy",
    "parse_categories",
    "parse_overrides",
]

ENV_PREFIX = "KRONIKA_RETENTION_"
NEVER = frozenset({"never", "off", "none"})
"""Values of an age setting that mean: retain."""


class Category(enum.Enum):
    """A kind of data retention looks after, in the order a run goes through them."""

    GENERATIONS = "generations"
    """Replaced read-model generations beyond a projection's ``replayed_versions_to_keep``."""
    JOBS = "jobs"
    """Finished replay jobs (completed or stopped)."""
    DEAD_LETTERS = "dead-letters"
    """Quarantined keys: marked skipped after an age, only when a policy says so."""
    SNAPSHOTS = "snapshots"
    """Snapshots of deleted streams, and old snapshots."""
    STREAMS = "streams"
    """Events hidden by a stream's ``max_age`` / ``max_count``: truncated."""


def _days(value: str) -> float | None:
    text = value.strip().lower()
    if text in NEVER:
        return None
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days >= 0):
        raise ValueError(f"must be a number of days (0 or more) or 'never', got {value!r}")
    return days


def _switch(value: str) -> bool:
    try:
        return parse_bool(value.strip())
    except ValueError:
        raise ValueError(f"must be true or false (on/off, yes/no, 1/0), got {value!r}") from None


def _count(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"must be a whole number of 1 or more, got {value!r}")
    return number


def _seconds(value: str) -> float | None:
    text = value.strip().lower()
    if text in NEVER or not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"must be a number of seconds above 0, or 'off', got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class _Setting:
    parse: Callable[[str], Any]
    meaning: str


SETTINGS: dict[str, _Setting] = {
    "generations": _Setting(
        _switch,
        "drop replaced read-model generations beyond each projection's "
        "replayed_versions_to_keep (needs --app)",
    ),
    "jobs_days": _Setting(
        _days,
        "remove completed and stopped replay jobs unchanged for this many days "
        "(a stopped one with what it built; needs --app)",
    ),
    "dead_letters_skip_days": _Setting(
        _days,
        "mark quarantined keys that last failed this many days ago skipped "
        "(their failing event is given up)",
    ),
    "snapshots_orphaned": _Setting(
        _switch, "delete snapshots of soft-deleted, tombstoned or unknown streams"
    ),
    "snapshots_days": _Setting(_days, "delete snapshots not rewritten for this many days"),
    "stream_limits": _Setting(
        _switch, "truncate the events a stream's max_age / max_count hide from reads"
    ),
    "batch_size": _Setting(_count, "rows removed per transaction at most"),
    "interval": _Setting(
        _seconds, "seconds between runs in kronika worker (off: the worker never runs it)"
    ),
}
"""Every setting: how its text is read and what it means (``kronika retention show``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """The effective retention settings (see :data:`SETTINGS` for each one's meaning)."""

    generations: bool = True
    """Drop replaced read-model generations beyond ``replayed_versions_to_keep``."""
    jobs_days: float | None = 30.0
    """Age in days after which finished replay jobs are removed (``None``: never)."""
    dead_letters_skip_days: float | None = None
    """Age in days after which quarantined keys are marked skipped (``None``: never)."""
    snapshots_orphaned: bool = True
    """Delete snapshots of streams that are not active."""
    snapshots_days: float | None = None
    """Age in days after which snapshots are deleted (``None``: never)."""
    stream_limits: bool = True
    """Truncate events hidden by ``max_age`` / ``max_count``."""
    batch_size: int = 500
    """Rows removed per transaction at most."""
    interval: float | None = None
    """Seconds between scheduled runs in a worker (``None``: not scheduled)."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], overrides: Mapping[str, str] | None = None
    ) -> RetentionPolicy:
        """The policy from ``KRONIKA_RETENTION_*`` variables, ``overrides`` winning."""
        values: dict[str, Any] = {}
        for variable, text in environ.items():
            if not variable.startswith(ENV_PREFIX) or not text.strip():
                continue
            name = variable.removeprefix(ENV_PREFIX).lower()
            if name not in SETTINGS:
                raise ConfigurationError(
                    f"{variable} is not a retention setting; known: {_known(env=True)}"
                )
            try:
                values[name] = SETTINGS[name].parse(text)
            except ValueError as exc:
                raise ConfigurationError(f"{variable}: {exc}") from None
        for name, text in (overrides or {}).items():
            try:
                values[name] = SETTINGS[name].parse(text)
            except ValueError as exc:
                raise ValidationError(str(exc), f"--set {name}") from None
        return cls(**values)

    def with_values(self, **values: Any) -> RetentionPolicy:
        """A copy with some settings replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Every setting's value, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _known(*, env: bool = False) -> str:
    return ", ".join(ENV_PREFIX + n.upper() if env else n for n in SETTINGS)


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["jobs_days=7", ...]`` from ``--set`` -> ``{"jobs_days": "7"}``, names checked."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not equals:
            raise ValidationError(f"expected NAME=VALUE, got {pair!r}", "--set")
        if name not in SETTINGS:
            raise ValidationError(
                f"{name!r} is not a retention setting; known: {_known()}", "--set"
            )
        found[name] = value
    return found


def parse_categories(values: Iterable[str]) -> list[Category]:
    """Category names (``--only``) -> categories in run order; none given means all."""
    known = {c.value: c for c in Category}
    chosen = set()
    for value in values:
        category = known.get(value.strip().lower())
        if category is None:
            raise ValidationError(
                f"unknown category {value!r}; choose from {', '.join(known)}", "--only"
            )
        chosen.add(category)
    return [c for c in Category if c in chosen or not chosen]
