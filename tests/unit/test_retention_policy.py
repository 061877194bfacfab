"""Retention policies from the environment and ``--set``: values, defaults, clear errors,
and every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from kronika.errors import ConfigurationError, ValidationError
from kronika.ops.retention_policy import (
    ENV_PREFIX,
    SETTINGS,
    Category,
    RetentionPolicy,
    parse_categories,
    parse_overrides,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_defaults_keep_dead_letters_and_run_no_schedule() -> None:
    policy = RetentionPolicy.from_env({})
    assert policy == RetentionPolicy()
    assert (policy.dead_letters_skip_days, policy.interval, policy.jobs_days) == (None, None, 30)
    assert policy.stream_limits and policy.generations and policy.snapshots_orphaned


def test_values_come_from_the_environment_and_overrides_win() -> None:
    environ = {
        "KRONIKA_RETENTION_JOBS_DAYS": "0.5",
        "KRONIKA_RETENTION_SNAPSHOTS_DAYS": "90",
        "KRONIKA_RETENTION_GENERATIONS": "off",
        "KRONIKA_RETENTION_BATCH_SIZE": " 50 ",
        "KRONIKA_RETENTION_INTERVAL": "3600",
        "KRONIKA_RETENTION_STREAM_LIMITS": "",  # empty: unset
        "KRONIKA_DATABASE_URL": "sqlite:///x.db",  # not ours
    }
    policy = RetentionPolicy.from_env(environ, {"snapshots_days": "Never"})
    assert policy.as_dict() == {
        "generations": False,
        "jobs_days": 0.5,
        "dead_letters_skip_days": None,
        "snapshots_orphaned": True,
        "snapshots_days": None,
        "stream_limits": True,
        "batch_size": 50,
        "interval": 3600.0,
    }
    assert policy.with_values(batch_size=None, interval=5.0).interval == 5.0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KRONIKA_RETENTION_JOBS_DAYS", "-1", "must be a number of days (0 or more) or 'never'"),
        ("KRONIKA_RETENTION_SNAPSHOTS_DAYS", "nan", "must be a number of days"),
        ("KRONIKA_RETENTION_DEAD_LETTERS_SKIP_DAYS", "a week", "must be a number of days"),
        ("KRONIKA_RETENTION_GENERATIONS", "sometimes", "must be true or false"),
        ("KRONIKA_RETENTION_BATCH_SIZE", "0", "must be a whole number of 1 or more"),
        ("KRONIKA_RETENTION_BATCH_SIZE", "1.5", "must be a whole number"),
        ("KRONIKA_RETENTION_INTERVAL", "-5", "must be a number of seconds above 0"),
        ("KRONIKA_RETENTION_SNAPSHOT_DAYS", "3", "is not a retention setting; known: "),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetentionPolicy.from_env({variable: value})
    assert caught.value.message.startswith(variable)
    assert message in caught.value.message


def test_bad_overrides_name_the_option() -> None:
    with pytest.raises(ValidationError, match=r"--set jobs_days: must be a number of days"):
        RetentionPolicy.from_env({}, parse_overrides(["jobs_days=-2"]))
    with pytest.raises(ValidationError, match=r"--set: 'days' is not a retention setting"):
        parse_overrides(["days=2"])
    with pytest.raises(ValidationError, match=r"--set: expected NAME=VALUE, got 'jobs_days'"):
        parse_overrides(["jobs_days"])
    assert parse_overrides(["Jobs-Days=7", "stream_limits=no"]) == {
        "jobs_days": "7",
        "stream_limits": "no",
    }


def test_categories_keep_run_order_and_unknown_ones_are_refused() -> None:
    assert parse_categories([]) == list(Category)
    assert parse_categories(["streams", "JOBS"]) == [Category.JOBS, Category.STREAMS]
    with pytest.raises(ValidationError, match=r"--only: unknown category 'events'; choose from"):
        parse_categories(["events"])


@pytest.mark.parametrize("page", ["reference/configuration.md", "operations/retention.md"])
def test_every_setting_is_documented(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [n for n in SETTINGS if f"`{ENV_PREFIX}{n.upper()}`" not in text]
    assert not missing, f"document in {page}: {missing}"
