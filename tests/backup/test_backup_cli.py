"""``kronika backup``, ``backup verify``, ``backup list`` and ``restore`` as an operator runs
them: the installed command in a child process, exit codes, messages, interruptions."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backup_drill import fill

from kronika import NewEvent, open_store
from kronika.ops import backup as ops

KRONIKA = Path(sys.executable).with_name("kronika")


def kronika(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``kronika ARGS`` (never raises on exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(KRONIKA), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def clean_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit ``code`` with one ``error:`` line naming ``words``, and no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    asyncio.run(fill(url, events=90))
    return url


def test_backup_verify_list_and_restore(tmp_path: Path, source: str) -> None:
    archive = tmp_path / "nightly.kar"
    made = kronika("--url", source, "backup", str(archive))
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""  # no progress bar without a terminal
    assert made.stdout.startswith(f"{archive}: ") and "verified" in made.stdout

    again = kronika("--url", source, "backup", "create", str(archive), "--force", "--json")
    record = json.loads(again.stdout)
    assert record["path"] == str(archive) and record["engine"] == "sqlite"
    assert record["verified_at"] is not None and record["events"] > 0

    listed = [json.loads(line) for line in kronika("--url", source, "backup", "list", "--json")
              .stdout.splitlines()]  # fmt: skip
    assert listed[0]["id"] == record["id"] and len(listed) == 2
    assert "nightly.kar" in kronika("--url", source, "backup", "list").stdout

    checked = kronika("backup", "verify", str(archive))
    assert checked.returncode == 0 and "ok: format, counts and checksums" in checked.stdout
    summary = json.loads(kronika("backup", "verify", str(archive), "--json").stdout)
    assert summary["ok"] and summary["sections"]["events"] == record["events"]
    assert summary["recorded"] is None
    marked = kronika("--url", source, "backup", "verify", str(archive), "--record", "--json")
    assert marked.returncode == 0 and json.loads(marked.stdout)["recorded"] == 1
    [newest] = [json.loads(kronika("--url", source, "backup", "list", "--json", "--limit", "1")
                .stdout)]  # fmt: skip
    assert newest["id"] == record["id"] and newest["verified_at"] > record["verified_at"]

    target = f"sqlite:///{tmp_path / 'dst.db'}"
    restored = kronika("--url", target, "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert f"{record['events']} events" in restored.stdout
    clean_error(kronika("--url", target, "restore", str(archive)), 1, "not empty", "--merge")
    merge = kronika("--url", target, "restore", str(archive), "--merge")
    clean_error(merge, 1, "cannot merge", "position")
    elsewhere = kronika("--url", target, "backup", "verify", str(archive), "--record")
    assert elsewhere.returncode == 1 and "not a backup in the catalog" in elsewhere.stderr


def test_bad_input_is_refused_with_its_reason(tmp_path: Path, source: str) -> None:
    archive = tmp_path / "a.kar"
    kronika("--url", source, "backup", str(archive), "--quiet")
    clean_error(kronika("--url", source, "backup", str(archive)), 2, "exists", "--force")
    clean_error(kronika("--url", "memory://", "backup", str(tmp_path / "m.kar")), 2, "SQLite")
    missing = tmp_path / "no" / "dir.kar"
    clean_error(kronika("--url", source, "backup", str(missing)), 2, "does not exist")

    bad = tmp_path / "bad.kar"
    bad.write_bytes(archive.read_bytes()[:-30])
    clean_error(kronika("backup", "verify", str(bad)), 1, "truncated")
    as_json = kronika("backup", "verify", str(bad), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["ok"] is False
    fresh = tmp_path / "fresh.db"
    clean_error(kronika("--url", f"sqlite:///{fresh}", "restore", str(bad)), 2, "truncated")
    assert not fresh.exists()
    clean_error(kronika("backup", "verify", str(tmp_path / "nope.kar")), 1, "no such archive")


def _seed(url: str, events: int) -> None:
    async def go() -> None:
        async with open_store(url) as store:
            for s in range(events // 1000):
                batch = [NewEvent("Placed", {"i": i, "pad": "x" * 200}) for i in range(1000)]
                await store.append(f"order-{s}", batch)

    asyncio.run(go())


def _kill_when(process: subprocess.Popen[bytes], path: Path) -> None:
    """SIGKILL the process as soon as ``path`` appears (fail if it finishes first)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, "it finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_killed_backup_or_restore_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    _seed(url, 30_000)
    archive = tmp_path / "a.kar"
    command = [str(KRONIKA), "--url", url, "backup", str(archive)]
    backup = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(backup, ops.partial_path(archive))
    assert not archive.exists()
    assert kronika("backup", "verify", str(ops.partial_path(archive))).returncode == 1

    assert kronika("--url", url, "backup", str(archive), "--quiet").returncode == 0
    assert not ops.partial_path(archive).exists()
    target = tmp_path / "dst.db"
    command = [str(KRONIKA), "--url", f"sqlite:///{target}", "restore", str(archive)]
    restore = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(restore, ops.partial_path(target))
    assert not target.exists()
    again = kronika("--url", f"sqlite:///{target}", "restore", str(archive))
    assert again.returncode == 0, again.stderr
    assert not ops.partial_path(target).exists()


def _interrupt(command: list[str], partial: Path) -> None:
    """Ctrl-C the command once it writes ``partial``; it exits 130."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not partial.exists():
        assert process.poll() is None, "it finished before it could be interrupted"
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err


def test_ctrl_c_during_a_backup_or_restore_removes_the_partial_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    _seed(url, 30_000)
    archive = tmp_path / "a.kar"
    _interrupt([str(KRONIKA), "--url", url, "backup", str(archive)], ops.partial_path(archive))
    assert not archive.exists() and not ops.partial_path(archive).exists()

    assert kronika("--url", url, "backup", str(archive), "--quiet").returncode == 0
    target = tmp_path / "dst.db"
    command = [str(KRONIKA), "--url", f"sqlite:///{target}", "restore", str(archive)]
    _interrupt(command, ops.partial_path(target))
    assert not target.exists() and not ops.partial_path(target).exists()
