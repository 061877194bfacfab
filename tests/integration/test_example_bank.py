"""The tutorial's example application runs on every backend, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "bank.py"
EXPECTED = "refused: account bob holds 30, cannot withdraw 500\nAnn: 70 EUR\nBob: 30 EUR\n"


def run(url: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bank_example_on_sqlite(tmp_path: Path) -> None:
    assert run(f"sqlite:///{tmp_path / 'bank.db'}", tmp_path) == EXPECTED


def test_the_bank_example_defaults_to_a_local_sqlite_file(tmp_path: Path) -> None:
    assert run("sqlite:///bank.db", tmp_path) == EXPECTED
    assert (tmp_path / "bank.db").exists()


@pytest.mark.postgres
def test_the_bank_example_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    assert run(postgres_url, tmp_path) == EXPECTED


def test_old_account_events_are_upcast(tmp_path: Path) -> None:
    """An AccountOpened stored at version 1 (no currency) is read as version 2."""
    import asyncio

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import bank
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    import kronika

    async def scenario() -> tuple[str, int]:
        async with kronika.open_store("memory://") as store:
            await store.append(
                "account-old",
                [kronika.NewEvent("AccountOpened", {"owner": "Olga"}, {"event_version": 1})],
            )
            repository = kronika.Repository(store, registry=bank.events)
            bus = bank.make_bus(repository)
            await bus.dispatch(bank.Deposit(account_id="old", amount=5))
            account = await repository.get(bank.Account, "old")
            return account.currency, account.balance

    assert asyncio.run(scenario()) == ("EUR", 5)
