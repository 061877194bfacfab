"""A small bank: accounts, deposits, withdrawals and transfers, on any Kronika store.

Run it:  python examples/bank.py [STORE_URL]      (default: sqlite:///bank.db)

It shows typed events, an aggregate with business rules, an upcaster for an old event
version, snapshots, a command bus with retries, and a transfer that changes two accounts
in one atomic multi-stream append.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pydantic import BaseModel, Field

import kronika
from kronika import (
    Aggregate,
    CommandBus,
    DomainError,
    Event,
    EventRegistry,
    Repository,
    Session,
    apply,
)

events = EventRegistry()


# -- events ------------------------------------------------------------------------------


@events.event("AccountOpened", version=2)
class AccountOpened(Event):
    owner: str
    currency: str


@events.upcaster("AccountOpened", from_version=1)
def _opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no currency: every account opened then was in euros."""
    return {**data, "currency": "EUR"}


@events.event("MoneyDeposited")
class MoneyDeposited(Event):
    amount: int = Field(gt=0)


@events.event("MoneyWithdrawn")
class MoneyWithdrawn(Event):
    amount: int = Field(gt=0)


# -- the aggregate -----------------------------------------------------------------------


class InsufficientFunds(DomainError):
    """A withdrawal or transfer larger than the balance."""


class Account(Aggregate):
    snapshot_every = 50

    owner: str = ""
    currency: str = ""
    balance: int = 0

    @classmethod
    def open(cls, account_id: str, owner: str, currency: str = "EUR") -> Account:
        account = cls(account_id)
        account.record(AccountOpened(owner=owner, currency=currency))
        return account

    def deposit(self, amount: int) -> None:
        self.record(MoneyDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise InsufficientFunds(
                f"account {self.id} holds {self.balance}, cannot withdraw {amount}"
            )
        self.record(MoneyWithdrawn(amount=amount))

    @apply
    def _opened(self, event: AccountOpened) -> None:
        self.owner, self.currency = event.owner, event.currency

    @apply
    def _deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    @apply
    def _withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount


# -- commands ----------------------------------------------------------------------------


class OpenAccount(BaseModel):
    account_id: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class Deposit(BaseModel):
    account_id: str
    amount: int = Field(gt=0)


class Transfer(BaseModel):
    source: str
    target: str
    amount: int = Field(gt=0)


def make_bus(repository: Repository) -> CommandBus:
    """The bank's command handlers."""
    bus = CommandBus(repository)

    @bus.handler(OpenAccount)
    async def open_account(command: OpenAccount, session: Session) -> None:
        session.add(Account.open(command.account_id, command.owner, command.currency))

    @bus.handler(Deposit)
    async def deposit(command: Deposit, session: Session) -> None:
        account = await session.get(Account, command.account_id)
        account.deposit(command.amount)

    @bus.handler(Transfer)
    async def transfer(command: Transfer, session: Session) -> None:
        source = await session.get(Account, command.source)
        target = await session.get(Account, command.target)
        source.withdraw(command.amount)
        target.deposit(command.amount)

    return bus


async def main(url: str) -> dict[str, int]:
    """Open two accounts, move money between them, and return the balances."""
    async with kronika.open_store(url) as store:
        repository = Repository(store, registry=events)
        bus = make_bus(repository)
        await bus.dispatch(OpenAccount(account_id="ann", owner="Ann"))
        await bus.dispatch(OpenAccount(account_id="bob", owner="Bob"))
        await bus.dispatch(Deposit(account_id="ann", amount=100))
        await bus.dispatch(Transfer(source="ann", target="bob", amount=30))
        try:
            await bus.dispatch(Transfer(source="bob", target="ann", amount=500))
        except InsufficientFunds as refused:
            print(f"refused: {refused}")
        balances = {}
        for name in ("ann", "bob"):
            account = await repository.get(Account, name)
            balances[name] = account.balance
            print(f"{account.owner}: {account.balance} {account.currency}")
        return balances


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///bank.db"))
