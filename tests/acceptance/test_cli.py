"""The ``kronika`` command as an operator runs it: a real process against a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

KRONIKA = Path(sys.executable).with_name("kronika")


def kronika(
    *args: str, url: str | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``kronika`` command and return its result (never raises on exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["COLUMNS"] = "200"
    command = [str(KRONIKA)] + (["--url", url] if url else []) + list(args)
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def ok(*args: str, url: str | None = None, stdin: str | None = None) -> str:
    """Run ``kronika`` and return stdout, failing the test on a non-zero exit."""
    result = kronika(*args, url=url, stdin=stdin)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ndjson(text: str) -> list[dict[str, Any]]:
    """Parse NDJSON output."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def version_fields(text: str) -> dict[str, str]:
    """``kronika version`` output as a dict: one ``label value`` pair per line."""
    return dict(line.split(maxsplit=1) for line in text.splitlines() if line.strip())


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit ``code``, one ``error:`` line naming ``words`` on stderr, and no traceback."""
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr.splitlines()[0], result.stderr


# -- the README's first command -------------------------------------------------------


def test_demo_appends_an_order_flow_and_shows_it(sqlite_url: str) -> None:
    shown = ok("demo", url=sqlite_url)
    for event_type in ("OrderPlaced", "ItemAdded", "OrderPaid", "OrderShipped", "PaymentReceived"):
        assert event_type in shown
    events = ndjson(ok("events", "read", "--json", url=sqlite_url))
    assert [e["type"] for e in events].count("ItemAdded") == 2
    assert len(events) == 6
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)


def test_demo_can_run_twice_on_the_same_store(sqlite_url: str) -> None:
    ok("demo", url=sqlite_url)
    ok("demo", url=sqlite_url)
    assert len(ndjson(ok("events", "read", "--json", url=sqlite_url))) == 12


def test_demo_on_the_default_store_creates_kronika_db(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    result = subprocess.run(
        [str(KRONIKA), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kronika.db").exists()


def test_python_dash_m_kronika_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kronika", "--url", "memory://", "version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert version_fields(result.stdout)["kronika"].startswith("0.")
    assert version_fields(result.stdout)["engine"] == "memory"


def test_version_reports_the_engine(sqlite_url: str) -> None:
    fields = version_fields(ok("version", url=sqlite_url))
    assert fields["engine"] == "sqlite"
    assert fields["url"] == sqlite_url
    assert fields["namespace"] == "default"


def test_version_reports_the_schema_version_without_creating_anything(
    sqlite_url: str, tmp_path: Path
) -> None:
    database = tmp_path / "kronika.db"
    assert sqlite_url.endswith(str(database))
    assert "pending: run kronika migrate" in version_fields(ok("version", url=sqlite_url))["schema"]
    assert not database.exists()
    ok("migrate", url=sqlite_url)
    assert version_fields(ok("version", url=sqlite_url))["schema"].endswith("(current)")


def test_version_hides_the_password() -> None:
    fields = version_fields(ok("version", url="postgresql://app:s3cret@db.invalid/kronika"))
    assert fields["engine"] == "postgresql"
    assert "s3cret" not in fields["url"]


# -- streams --------------------------------------------------------------------------


def test_append_and_read_round_trip(sqlite_url: str) -> None:
    event_id = str(uuid.uuid4())
    appended = ok(
        "streams", "append", "order-1", "OrderPlaced", '{"total": 12}',
        "--expected-version", "no_stream", "--tag", "customer:7", "--id", event_id, "--json",
        url=sqlite_url,
    )  # fmt: skip
    assert json.loads(appended)["next_expected_version"] == 0
    ok("streams", "append", "order-1", "OrderPaid", "--expected-version", "0", url=sqlite_url)
    events = ndjson(ok("streams", "read", "order-1", "--json", url=sqlite_url))
    assert [(e["version"], e["type"]) for e in events] == [(0, "OrderPlaced"), (1, "OrderPaid")]
    first = events[0]
    assert first["id"] == event_id
    assert first["data"] == {"total": 12}
    assert first["tags"] == ["customer:7"]
    assert first["stream"] == "order-1"
    assert events[1]["data"] == {}


def test_read_backwards_with_limit_and_table(sqlite_url: str) -> None:
    for n in range(3):
        ok("streams", "append", "s-1", "Counted", json.dumps({"n": n}), url=sqlite_url)
    events = ndjson(
        ok("streams", "read", "s-1", "--backwards", "--limit", "2", "--json", url=sqlite_url)
    )
    assert [e["version"] for e in events] == [2, 1]
    forwards = ndjson(ok("streams", "read", "s-1", "--from-version", "1", "--json", url=sqlite_url))
    assert [e["version"] for e in forwards] == [1, 2]
    table = ok("streams", "read", "s-1", url=sqlite_url)
    assert "Counted" in table
    assert '{"n":2}' in table


def test_retrying_an_append_with_the_same_id_writes_once(sqlite_url: str) -> None:
    event_id = str(uuid.uuid4())
    for _ in range(2):
        ok("streams", "append", "pay-1", "Paid", "{}", "--id", event_id, url=sqlite_url)
    assert len(ndjson(ok("streams", "read", "pay-1", "--json", url=sqlite_url))) == 1


def test_append_from_stdin_is_one_atomic_batch(sqlite_url: str) -> None:
    lines = "\n".join(
        [
            json.dumps({"type": "A", "data": {"i": 1}, "tags": ["t:1"]}),
            "",
            json.dumps({"type": "B", "data": {"i": 2}, "metadata": {"correlation_id": "c-1"}}),
        ]
    )
    result = json.loads(
        ok("streams", "append", "batch-1", "--stdin", "--json", url=sqlite_url, stdin=lines)
    )
    assert result["next_expected_version"] == 1
    events = ndjson(ok("streams", "read", "batch-1", "--json", url=sqlite_url))
    assert [e["type"] for e in events] == ["A", "B"]
    assert events[0]["tags"] == ["t:1"]
    assert events[1]["metadata"]["correlation_id"] == "c-1"


def test_a_bad_stdin_line_appends_nothing(sqlite_url: str) -> None:
    lines = json.dumps({"type": "A", "data": {}}) + "\n" + json.dumps({"type": "B"}) + "\n"
    result = kronika("streams", "append", "batch-2", "--stdin", url=sqlite_url, stdin=lines)
    assert_clean_error(result, 2, "stdin line 2", "data")
    assert ndjson(ok("events", "read", "--json", url=sqlite_url)) == []


def test_wrong_expected_version_is_a_conflict(sqlite_url: str) -> None:
    ok("streams", "append", "order-2", "OrderPlaced", "{}", url=sqlite_url)
    result = kronika(
        "streams", "append", "order-2", "OrderPlaced", "{}", "--expected-version", "no_stream",
        url=sqlite_url,
    )  # fmt: skip
    assert_clean_error(result, 1, "order-2", "expected version")


def test_stream_info_as_table_and_json(sqlite_url: str) -> None:
    ok("streams", "append", "order-3", "OrderPlaced", "{}", url=sqlite_url)
    found = json.loads(ok("streams", "info", "order-3", "--json", url=sqlite_url))
    assert found["version"] == 0
    assert found["state"] == "active"
    assert "active" in ok("streams", "info", "order-3", url=sqlite_url)


def test_info_of_a_missing_stream_exits_1(sqlite_url: str) -> None:
    assert_clean_error(kronika("streams", "info", "nope-1", url=sqlite_url), 1, "nope-1")


def test_soft_delete_then_recreate(sqlite_url: str) -> None:
    ok("streams", "append", "cart-1", "Added", "{}", url=sqlite_url)
    ok("streams", "delete", "cart-1", "--yes", url=sqlite_url)
    assert ndjson(ok("streams", "read", "cart-1", "--json", url=sqlite_url)) == []
    ok(
        "streams",
        "append",
        "cart-1",
        "Added",
        "{}",
        "--expected-version",
        "no_stream",
        url=sqlite_url,
    )


def test_hard_delete_tombstones(sqlite_url: str) -> None:
    ok("streams", "append", "cart-2", "Added", "{}", url=sqlite_url)
    ok("streams", "delete", "cart-2", "--hard", "--yes", url=sqlite_url)
    result = kronika("streams", "append", "cart-2", "Added", "{}", url=sqlite_url)
    assert_clean_error(result, 1, "cart-2", "deleted")


def test_delete_without_yes_asks_and_aborts_on_no(sqlite_url: str) -> None:
    ok("streams", "append", "cart-3", "Added", "{}", url=sqlite_url)
    result = kronika("streams", "delete", "cart-3", url=sqlite_url, stdin="n\n")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(ndjson(ok("streams", "read", "cart-3", "--json", url=sqlite_url))) == 1


def test_truncate_before_a_version(sqlite_url: str) -> None:
    for n in range(4):
        ok("streams", "append", "log-1", "Line", json.dumps({"n": n}), url=sqlite_url)
    ok("streams", "truncate", "log-1", "--before", "2", url=sqlite_url)
    events = ndjson(ok("streams", "read", "log-1", "--json", url=sqlite_url))
    assert [e["version"] for e in events] == [2, 3]


# -- the global log -------------------------------------------------------------------


def test_events_read_filters(sqlite_url: str) -> None:
    ok("streams", "append", "order-9", "OrderPlaced", "{}", "--tag", "vip", url=sqlite_url)
    ok("streams", "append", "user-9", "UserJoined", "{}", url=sqlite_url)
    ok("streams", "append", "order-8", "OrderPaid", "{}", url=sqlite_url)

    def types(*filters: str) -> list[str]:
        return [e["type"] for e in ndjson(ok("events", "read", "--json", *filters, url=sqlite_url))]

    assert types() == ["OrderPlaced", "UserJoined", "OrderPaid"]
    assert types("--category", "order") == ["OrderPlaced", "OrderPaid"]
    assert types("--type", "UserJoined", "--type", "OrderPaid") == ["UserJoined", "OrderPaid"]
    assert types("--tag", "vip") == ["OrderPlaced"]
    assert types("--limit", "1") == ["OrderPlaced"]
    second = ndjson(ok("events", "read", "--json", url=sqlite_url))[1]["position"]
    assert types("--from-position", str(second)) == ["UserJoined", "OrderPaid"]
    assert "UserJoined" in ok("events", "read", url=sqlite_url)


def test_events_tail_catches_up_from_a_position(sqlite_url: str) -> None:
    ok("streams", "append", "t-1", "First", "{}", url=sqlite_url)
    ok("streams", "append", "t-1", "Second", "{}", url=sqlite_url)
    shown = ok("events", "tail", "--from-position", "0", "--limit", "2", "--json", url=sqlite_url)
    assert [e["type"] for e in ndjson(shown)] == ["First", "Second"]


def test_events_tail_follows_live_appends(sqlite_url: str) -> None:
    ok("migrate", url=sqlite_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    command = [str(KRONIKA), "--url", sqlite_url, "events", "tail", "--limit", "1", "--json"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as tail:
        try:
            assert tail.stderr is not None
            assert "following" in tail.stderr.readline()  # subscribed: its start is fixed
            ok("streams", "append", "live-1", "Live", "{}", url=sqlite_url)
            out, _ = tail.communicate(timeout=30)
        finally:
            tail.kill()
    assert [e["type"] for e in ndjson(out)] == ["Live"]


def test_events_tail_stops_cleanly_on_ctrl_c(sqlite_url: str) -> None:
    ok("migrate", url=sqlite_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    command = [str(KRONIKA), "--url", sqlite_url, "events", "tail"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as tail:
        try:
            assert tail.stderr is not None
            assert "following" in tail.stderr.readline()
            tail.send_signal(signal.SIGINT)
            _, err = tail.communicate(timeout=30)
        finally:
            tail.kill()
    assert tail.returncode == 130
    assert "Traceback" not in err


# -- migrations -----------------------------------------------------------------------


def test_migrate_check_passes_on_a_migrated_database(sqlite_url: str) -> None:
    ok("migrate", url=sqlite_url)
    result = kronika("migrate", "--check", url=sqlite_url)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_migrate_check_fails_while_migrations_are_pending(sqlite_url: str) -> None:
    result = kronika("migrate", "--check", url=sqlite_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pending" in result.stderr
    assert "0001_" in result.stderr
    ok("migrate", url=sqlite_url)
    assert kronika("migrate", "--check", url=sqlite_url).returncode == 0


def test_migrate_is_idempotent(sqlite_url: str) -> None:
    first = ok("migrate", url=sqlite_url)
    assert "applied 0001_" in first
    second = ok("migrate", url=sqlite_url)
    assert "0 applied" in second


# -- bad input: exit 2, one line naming the field, no traceback ------------------------

BAD_INPUT = [
    (["streams", "append", "", "OrderPlaced", "{}"], "stream"),
    (["streams", "append", "order-1", "OrderPlaced", "{not json"], "DATA_JSON"),
    (["streams", "append", "order-1", "OrderPlaced", "[1, 2]"], "DATA_JSON"),
    (
        ["streams", "append", "order-1", "OrderPlaced", "{}", "--expected-version", "soon"],
        "--expected-version",
    ),
    (
        ["streams", "append", "order-1", "OrderPlaced", "{}", "--expected-version", "-1"],
        "--expected-version",
    ),
    (["streams", "append", "order-1", "", "{}"], "type"),
    (["streams", "append", "order-1", "OrderPlaced", "{}", "--id", "not-a-uuid"], "id"),
    (["streams", "append", "order-1"], "TYPE"),
    (["streams", "read", ""], "stream"),
    (["streams", "info", ""], "stream"),
]


@pytest.mark.parametrize(("args", "field"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_naming_the_field(args: list[str], field: str) -> None:
    assert_clean_error(kronika(*args, url="memory://"), 2, field)


def test_bad_input_on_sqlite_exits_2_too(sqlite_url: str) -> None:
    result = kronika("streams", "append", "", "OrderPlaced", "{}", url=sqlite_url)
    assert_clean_error(result, 2, "stream")


def test_bad_json_on_stdin_names_the_line() -> None:
    result = kronika(
        "streams",
        "append",
        "s-1",
        "--stdin",
        url="memory://",
        stdin='{"type": "A", "data": {}}\n{oops\n',
    )
    assert_clean_error(result, 2, "stdin line 2")


def test_unknown_store_url_is_a_configuration_error() -> None:
    assert_clean_error(kronika("version", url="mysql://localhost/x"), 2, "mysql")


def test_unknown_store_option_is_named() -> None:
    assert_clean_error(kronika("version", url="memory://?colour=blue"), 2, "colour")


def test_namespaces_are_isolated(sqlite_url: str) -> None:
    ok(
        "--namespace",
        "tenant-a",
        "streams",
        "append",
        "order-1",
        "OrderPlaced",
        "{}",
        url=sqlite_url,
    )
    assert ndjson(ok("--namespace", "tenant-b", "events", "read", "--json", url=sqlite_url)) == []
    assert (
        len(ndjson(ok("--namespace", "tenant-a", "events", "read", "--json", url=sqlite_url))) == 1
    )


def test_url_comes_from_the_environment(sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["KRONIKA_DATABASE_URL"] = sqlite_url
    result = subprocess.run(
        [str(KRONIKA), "version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert version_fields(result.stdout)["engine"] == "sqlite"


def test_memory_urls_work_in_process() -> None:
    shown = ok("demo", url="memory://")
    assert "OrderPlaced" in shown


REGISTRY_APP = """
from kronika import Event, EventRegistry

registry = EventRegistry()


@registry.event("OrderPlaced", version=2)
class OrderPlaced(Event):
    customer: str
    channel: str = "web"


@registry.upcaster("OrderPlaced", from_version=1)
def v1_to_v2(data: dict) -> dict:
    return {**data, "channel": "shop"}
"""


def test_events_check_gates_a_release_on_unreadable_events(tmp_path: Path) -> None:
    """B4: stored type/version pairs without a path to a registered class fail the check."""
    (tmp_path / "shopevents.py").write_text(REGISTRY_APP, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'kronika.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KRONIKA), "--url", url, "events", "check", "--registry", *extra],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip

    ok("streams", "append", "order-1", "OrderPlaced", '{"customer": "c-1"}', url=url)
    good = check("shopevents:registry")
    assert good.returncode == 0, good.stderr
    ok("streams", "append", "order-2", "OrderShipped", "{}", url=url)
    ok(
        "streams", "append", "order-3", "OrderPlaced", '{"customer": "c-3"}',
        "--metadata", '{"event_version": 3}', url=url,
    )  # fmt: skip
    bad = check("shopevents:registry", "--json")
    assert bad.returncode == 1
    found = [json.loads(line) for line in bad.stdout.splitlines()]
    assert {(f["type"], f["version"]) for f in found} == {("OrderShipped", 1), ("OrderPlaced", 3)}
    only_versions = check("shopevents:registry", "--ignore-unregistered")
    assert only_versions.returncode == 1
    assert "OrderShipped" not in only_versions.stdout
    wrong = check("shopevents:nothing")
    assert wrong.returncode == 2
    assert "not an EventRegistry" in wrong.stderr
