"""The restore drill's data and comparisons, shared by the SQLite and PostgreSQL tests.

:func:`fill` builds a store holding every kind of row an archive carries; :func:`state`
reads a store back through the public API (events of every namespace, stream info,
snapshots, processors, checkpoints, failed keys, documents, jobs, keys) and through a raw
export (every archived column, hash chains included), so two stores compare equal only
when a restore kept everything.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kronika import NewEvent, StreamAppend, open_store
from kronika.store.archive import SECTIONS, archive_of
from kronika.store.integrity import chains_of
from kronika.store.keys import ApiKeyRecord
from kronika.store.processing import FailedKey, FailureState, Job, JobState
from kronika.store.protocol import EventStore
from kronika.store.verify import verify

__all__ = ["NAMESPACES", "chains", "fill", "raw_rows", "state"]

NAMESPACES = ("default", "tenant-b")
START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _event(i: int, kind: str) -> NewEvent:
    return NewEvent(
        kind,
        {"i": i, "text": f'line\n"quoted" \\ tab\t é {i}', "nested": {"z": [1, 2.5, None]}},
        {"correlation_id": f"corr-{i % 17}", "user": f"u{i % 5}"},
        tags=(f"customer:{i % 11}", "all", "all") if i % 3 else (),
    )


async def _events(store: EventStore, count: int) -> None:
    """``count`` events: multi-stream appends, tags (some repeated), metadata."""
    for i in range(0, count, 3):
        j = i // 3
        order, customer = f"order-{j % 40}", f"customer-{j % 13}"
        await store.append_multi(
            [
                StreamAppend(order, [_event(i, "OrderPlaced"), _event(i + 1, "OrderPaid")]),
                StreamAppend(customer, [_event(i + 2, "CustomerSeen")]),
            ]
        )


async def _stream_admin(store: EventStore) -> None:
    await store.truncate_stream("order-1", 10)
    await store.delete_stream("order-2")
    await store.delete_stream("order-3", hard=True)
    await store.delete_stream("never-written", hard=True)
    await store.set_stream_metadata("order-4", max_age=86400.5, max_count=1000, metadata={"a": 1})
    await store.set_stream_metadata("settings-only", metadata={"owner": "ops"})
    await store.write_snapshot("order-5", 20, {"total": 12.5, "items": ["a"]}, schema_version=3)
    await store.write_snapshot("customer-1", 5, {"seen": True})


async def _processing(store: EventStore, head: int) -> None:
    processing = store.processing  # type: ignore[attr-defined]
    await processing.register_processor("totals", 4)
    await processing.register_processor("mailer", 1)
    await processing.set_paused("mailer", True)
    failure = FailedKey(
        processor="totals",
        partition=2,
        key="order-7",
        position=head // 2,
        event_id=uuid.uuid4(),
        event_type="OrderPaid",
        attempts=3,
        error="ValueError: boom",
        stack="Traceback ...",
        first_failed_at=START,
        last_failed_at=START + timedelta(minutes=5),
        next_retry_at=None,
        state=FailureState.QUARANTINED,
    )
    async with processing.transaction() as tx:
        for partition in range(4):
            await tx.set_checkpoint("totals", partition, head - partition)
        await tx.documents.put("totals", "order-9", {"sum": 99.5, "lines": [1, 2]})
        await tx.documents.put("totals", "order-10", {"sum": 0})
        await tx.save_failure(failure)
    job = Job(
        id=str(uuid.uuid4()),
        kind="replay",
        processor="totals",
        generation=2,
        state=JobState.STOPPED,
        step="catching up",
        target=head,
        error=None,
        created_at=START,
        updated_at=START + timedelta(seconds=1),
    )
    await processing.create_job(job)


async def _keys(store: EventStore) -> None:
    keys = store.keys  # type: ignore[attr-defined]
    for n, categories in enumerate((None, ("order", "customer"))):
        await keys.create_key(
            ApiKeyRecord(
                id=f"key{n}",
                name=f"ci-{n}",
                secret_hash=hashlib.sha256(f"secret-{n}".encode()).digest(),
                roles=("reader", "writer"),
                categories=categories,
                created_at=START,
                expires_at=START + timedelta(days=90) if n else None,
            )
        )


async def fill(url: str, *, events: int = 3000) -> None:
    """Fill the store at ``url`` with every kind of row, in two namespaces."""
    async with open_store(url) as store:
        await _events(store, events)
        await _stream_admin(store)
        await _processing(store, await store.head_position())
        await _keys(store)
    async with open_store(url, namespace=NAMESPACES[1]) as other:
        await _events(other, 30)
        await other.delete_stream("order-5")


def _normalised(kind: str, value: Any) -> Any:
    """Compare JSON by value: PostgreSQL's jsonb rewrites the text (key order, spaces); a
    SQLite export passes JSON arrays through as fragments."""
    if isinstance(value, orjson.Fragment):
        return orjson.loads(orjson.dumps(value))
    return orjson.loads(value) if kind == "json" and value is not None else value


async def raw_rows(store: EventStore) -> dict[str, list[list[Any]]]:
    """Every archived row, by section, in a stable order (json compared by value)."""
    found: dict[str, list[list[Any]]] = {}
    async with archive_of(store).snapshot() as source:
        for section in SECTIONS:
            rows = []
            async for page in source.pages(section, 500):
                rows.extend(
                    [_normalised(c.kind, v) for c, v in zip(section.columns, row, strict=True)]
                    for row in page
                )
            found[section.name] = sorted(rows, key=lambda r: orjson.dumps(r[:3]))
    return found


async def _public(store: EventStore) -> dict[str, Any]:
    """What the public API shows of one namespace."""
    events = await store.read_all()
    streams = sorted({e.stream for e in events} | {"order-2", "order-3", "settings-only"})
    infos = {}
    for stream in streams:
        try:
            infos[stream] = await store.stream_info(stream)
        except Exception as exc:  # a stream the namespace lacks: compare the error
            infos[stream] = type(exc).__name__
    processing = store.processing  # type: ignore[attr-defined]
    async with processing.documents_reader() as docs:
        documents = [await docs.get("totals", k) for k in ("order-9", "order-10")]
    return {
        "events": events,
        "infos": infos,
        "snapshots": [await store.read_snapshot(s) for s in ("order-5", "customer-1")],
        "processors": await processing.processors(),
        "failures": await processing.failures(),
        "jobs": await processing.jobs(),
        "documents": documents,
        "keys": await store.keys.keys(),  # type: ignore[attr-defined]
    }


async def state(url: str) -> dict[str, Any]:
    """Everything the drill compares, for every namespace, plus the raw archived rows."""
    found: dict[str, Any] = {}
    for namespace in NAMESPACES:
        async with open_store(url, namespace=namespace) as store:
            found[namespace] = await _public(store)
    store = open_store(url)
    found["raw"] = await raw_rows(store)
    return found


async def chains(url: str) -> dict[str, tuple[Any, ...]]:
    """``kronika verify`` of every namespace: clean?, events, unchained, global hash, and
    how many recorded checkpoints it checked (it records new ones as it goes)."""
    found = {}
    for namespace in NAMESPACES:
        async with open_store(url, namespace=namespace) as store:
            report = await verify(chains_of(store), checkpoint_every=50)
        found[namespace] = (
            report.clean,
            report.events,
            report.unchained,
            report.global_hash,
            report.checkpoints_checked,
        )
    return found
