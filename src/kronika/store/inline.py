"""Inline projections: read models updated in the same transaction as the append (K8).

An :class:`InlineHandler` is registered on a store before it opens
(``open_store(url, inline=[...])``). Each append that stores events of a type a handler
wants calls its :meth:`~InlineHandler.apply` once per event, with the event as stored (its
real version, position and ``recorded_at``), after the events are inserted and before the
commit. The handler writes through an :class:`InlineWriter` (SQL in the same database, or
documents); if it raises, the append is rolled back and fails with
:class:`~kronika.errors.InlineProjectionFailed`: the read model never lags or disagrees with
the log. A retried append whose events are stored already returns the first result and
runs no handler.

The store layer knows only this protocol; :class:`kronika.runtime.InlineProjection` is the
decorator-based way to write one. What the database remembers about each projection is an
:class:`InlineRecord` (table ``inline_projections``): registering one on a log that already
holds events of its types leaves its read model incomplete until it is rebuilt
(``store.rebuild_inline(name)``, ``kronika inline rebuild``).

Every process that appends must register the same inline projections: a store refuses to
append events of a type that a projection recorded in its database handles but that it did
not register itself (see :class:`InlineGuard`), instead of silently skipping the read model.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from kronika.domain.events import RecordedEvent
from kronika.errors import ConfigurationError, InlineProjectionFailed, NotFound

__all__ = [
    "REBUILD_BATCH",
    "InlineGuard",
    "InlineHandler",
    "InlineHandlers",
    "InlineOutput",
    "InlineRecord",
    "InlineWriter",
    "Params",
    "apply_one",
    "changed_types",
    "check_statement",
    "ddl_for",
    "failure",
    "inline_status",
    "report_registered",
    "sorted_types",
    "unseen_types",
]

log = logging.getLogger("kronika.store.inline")

REBUILD_BATCH = 1_000
"""Events read and applied per step of a rebuild (all steps share one transaction)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|ABORT|START|PREPARE|VACUUM)\b",
    re.IGNORECASE,
)

Params = Sequence[Any] | Mapping[str, Any]


class InlineWriter(Protocol):
    """What an inline handler may do: write, synchronously, in the append's transaction."""

    def write(self, sql: str, params: Params) -> None:
        """Run a write (``INSERT``, ``UPDATE``, ``DELETE``) in the store's database, with the
        driver's placeholders (SQLite ``?``/``:name``, PostgreSQL ``%s``/``%(name)s``).
        PostgreSQL sends writes in batches before the commit; errors still fail the append."""
        ...

    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        """Store (insert or replace) a JSON document of the read-model document store."""
        ...

    def delete_document(self, collection: str, key: str) -> None:
        """Remove a document if it exists."""
        ...


@runtime_checkable
class InlineHandler(Protocol):
    """A read model a store updates inside each append's transaction."""

    @property
    def name(self) -> str:
        """Stable, unique name: its record in the database is kept under it."""
        ...

    @property
    def tables(self) -> Mapping[str, str]:
        """SQL tables it writes: name -> ``CREATE TABLE IF NOT EXISTS {table} (...)``,
        created when the store opens, emptied by a rebuild."""
        ...

    @property
    def collections(self) -> Sequence[str]:
        """Document collections it writes (emptied by a rebuild)."""
        ...

    @property
    def types(self) -> frozenset[str] | None:
        """The event types it handles (``None``: every event)."""
        ...

    def apply(self, event: RecordedEvent, out: InlineWriter) -> None:
        """Update the read model for one stored event; raise to fail the append."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class InlineRecord:
    """What a store's database remembers about one inline projection."""

    name: str
    """The projection's name."""
    types: tuple[str, ...] | None
    """The event types it handled when last registered, sorted (``None``: every event)."""
    registered_at: datetime
    """When a store first registered it."""
    registered_position: int
    """The head of the log at that moment (0: the log was empty)."""
    needs_rebuild: bool
    """Events of its types were stored before it handled them (it was registered on a
    non-empty log, or gained types): its read model is incomplete until rebuilt."""
    rebuilt_at: datetime | None = None
    """When it was last rebuilt, if ever."""
    rebuilt_position: int | None = None
    """The head of the log when it was last rebuilt."""

    @property
    def state(self) -> str:
        """``needs rebuild`` or ``complete``."""
        return "needs rebuild" if self.needs_rebuild else "complete"


def check_statement(sql: str) -> None:
    """Refuse SQL that would end or split the append's transaction."""
    if _TRANSACTION_CONTROL.match(sql):
        raise ConfigurationError(
            "an inline projection's SQL must not control the transaction "
            f"(got {sql.strip()[:40]!r}): the append commits it"
        )


def ddl_for(handler: InlineHandler) -> list[tuple[str, str]]:
    """``(table, CREATE statement)`` of each table the handler declares, names checked."""
    statements = []
    for table, ddl in handler.tables.items():
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(
                f"inline projection {handler.name!r}: table name {table!r} must be a plain SQL "
                "identifier (letters, digits, _)"
            )
        # The DDL is the projection's own code; the name is a checked identifier.
        statements.append((table, ddl.format(table=table)))  # sql-static: allow DDL
    return statements


class InlineOutput(abc.ABC):
    """Base of the backends' :class:`InlineWriter`: knows which projection and event it is
    writing for, so a failure found later (a batched write) still names them."""

    projection = ""
    """The projection whose handler is running."""
    event: RecordedEvent | None = None
    """The event it is handling."""

    @abc.abstractmethod
    def write(self, sql: str, params: Params) -> None:
        """See :meth:`InlineWriter.write`."""

    @abc.abstractmethod
    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        """See :meth:`InlineWriter.put_document`."""

    @abc.abstractmethod
    def delete_document(self, collection: str, key: str) -> None:
        """See :meth:`InlineWriter.delete_document`."""


def failure(
    projection: str, event: RecordedEvent, cause: BaseException, reason: str | None = None
) -> InlineProjectionFailed:
    """The error of a handler (or its SQL) that failed on ``event``; chain ``cause`` to it.
    ``reason`` defaults to the cause's type and message."""
    reason = reason or f"{type(cause).__name__}: {cause}"
    return InlineProjectionFailed(
        projection,
        reason,
        event_id=str(event.id),
        event_type=event.type,
        stream=event.stream,
    )


class InlineHandlers:
    """The inline projections registered on one store, indexed by the types they handle."""

    def __init__(self, handlers: Iterable[InlineHandler]) -> None:
        self.handlers: tuple[InlineHandler, ...] = tuple(_checked(handlers))
        """In registration order: each event is applied by them in this order."""
        self._by_name = {h.name: h for h in self.handlers}
        self._catch_all = tuple(h for h in self.handlers if h.types is None)
        types = {t for h in self.handlers for t in (h.types or ())}
        self._by_type: dict[str, tuple[InlineHandler, ...]] = {
            t: tuple(h for h in self.handlers if h.types is None or t in h.types) for t in types
        }

    @staticmethod
    def listed(handlers: object) -> list[Any]:
        """``handlers`` as a list; ``ConfigurationError`` unless it is an iterable (not text)."""
        if isinstance(handlers, (str, bytes)) or not isinstance(handlers, Iterable):
            raise ConfigurationError("inline= takes a list of inline projections")
        return list(handlers)

    def __len__(self) -> int:
        return len(self.handlers)

    def named(self, name: str) -> InlineHandler:
        """The handler registered as ``name``; ``NotFound`` naming the registered ones."""
        found = self._by_name.get(name)
        if found is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise NotFound(
                f"inline projection {name!r} is not registered on this store (registered: {known})"
            )
        return found

    def wants(self, event_type: str) -> bool:
        """Whether some handler applies events of this type."""
        return bool(self._catch_all) or event_type in self._by_type

    def wants_any(self, event_types: Iterable[str]) -> bool:
        """Whether some handler applies an event of one of these types."""
        return bool(self._catch_all) or any(t in self._by_type for t in event_types)

    def run(self, events: Sequence[RecordedEvent], out: InlineOutput) -> None:
        """Apply each event, in order, with every handler that wants its type."""
        by_type, catch_all = self._by_type, self._catch_all
        for event in events:
            for handler in by_type.get(event.type, catch_all):
                apply_one(handler, event, out)


def apply_one(handler: InlineHandler, event: RecordedEvent, out: InlineOutput) -> None:
    """Apply one event with one handler; its failure becomes ``InlineProjectionFailed``."""
    out.projection, out.event = handler.name, event
    try:
        handler.apply(event, out)
    except Exception as exc:  # any failure of the handler fails the append
        raise failure(handler.name, event, exc) from exc


def _checked(handlers: Iterable[InlineHandler]) -> list[InlineHandler]:
    found: list[InlineHandler] = []
    names: set[str] = set()
    for given in InlineHandlers.listed(handlers):
        # An InlineProjection class: one instance is enough.
        handler = given() if isinstance(given, type) else given
        if not isinstance(handler, InlineHandler):
            raise ConfigurationError(
                f"inline=: {handler!r} is not an inline projection (see kronika.runtime."
                "InlineProjection)"
            )
        if not handler.name or handler.name in names:
            problem = "has no name" if not handler.name else "is registered twice"
            raise ConfigurationError(f"inline projection {handler.name!r} {problem}")
        ddl_for(handler)  # checks the table names now, not at the first append
        names.add(handler.name)
        found.append(handler)
    return found


def changed_types(
    old: tuple[str, ...] | None, new: frozenset[str] | None
) -> tuple[tuple[str, ...], bool] | None:
    """Which stored events a projection whose types went from ``old`` to ``new`` has not
    seen: ``(types, inside)`` means events whose type is (``inside``) or is not in
    ``types``; ``None`` when nothing changed."""
    if old is None and new is None:
        return None
    if old is None or new is None:
        kept = old if new is None else tuple(sorted(new))
        assert kept is not None
        return kept, False
    if set(old) == new:
        return None
    return tuple(sorted(new.symmetric_difference(old))), True


def unseen_types(
    record: InlineRecord | None, handler: InlineHandler
) -> tuple[tuple[str, ...] | None, bool] | None:
    """Which stored events ``handler`` has not applied, given its ``record`` (``None``: it is
    new): ``None`` when none, else ``(types, inside)``: events whose type is (``inside``) or
    is not in ``types``, every event when ``types`` is ``None``."""
    if record is None:
        return sorted_types(handler), True
    return changed_types(record.types, handler.types)


def sorted_types(handler: InlineHandler) -> tuple[str, ...] | None:
    """The handler's types as stored in its record."""
    return None if handler.types is None else tuple(sorted(handler.types))


class InlineGuard:
    """Types this store must not append: a projection recorded in the database handles them,
    but this store did not register it, so its read model would silently miss them."""

    def __init__(self, by_type: dict[str, str], everything: str | None) -> None:
        self._by_type = by_type
        self._everything = everything

    @classmethod
    def of(
        cls, records: Iterable[InlineRecord], registered: InlineHandlers | None
    ) -> InlineGuard | None:
        """The guard for ``records`` (what the database knows), or None when this store
        registered every recorded projection."""
        here = {h.name for h in registered.handlers} if registered is not None else set()
        missing = [r for r in records if r.name not in here]
        if not missing:
            return None
        everything = next((r.name for r in missing if r.types is None), None)
        by_type = {t: r.name for r in missing for t in (r.types or ())}
        return cls(by_type, everything)

    def check(self, event_types: Iterable[str]) -> None:
        """Raise ``ConfigurationError`` if an event type belongs to an unregistered projection."""
        for event_type in event_types:
            name = self._everything or self._by_type.get(event_type)
            if name is not None:
                raise ConfigurationError(
                    f"inline projection {name!r} handles {event_type!r} events but is not "
                    "registered on this store: register it in every process that appends "
                    "(open_store(url, inline=[...]), kronika worker --app), or forget it with "
                    f"'kronika inline drop {name}' if it was removed"
                )


def report_registered(records: Iterable[InlineRecord], handlers: InlineHandlers) -> None:
    """Log a warning for each registered projection whose read model needs a rebuild."""
    registered = {h.name for h in handlers.handlers}
    for record in records:
        if record.needs_rebuild and record.name in registered:
            log.warning(
                "inline projection %r missed events stored before it handled them: its read "
                "model is incomplete until 'kronika inline rebuild %s' runs",
                record.name,
                record.name,
                extra={"action": "inline_register", "projection": record.name},
            )


async def inline_status(store: object) -> list[InlineRecord]:
    """Every inline projection recorded in the store's database (namespace), by name;
    empty for a backend without inline projections (e.g. a remote store). For ``kronika
    doctor``-style checks: a record with ``needs_rebuild`` has an incomplete read model."""
    status = getattr(store, "inline_status", None)
    if status is None or getattr(store, "engine", "") == "http":
        return []
    records: list[InlineRecord] = await status()
    return records
