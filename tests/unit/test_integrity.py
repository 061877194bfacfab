"""Hash chains without a database: the canonical content digest, the chains, and the
verifier's findings on the memory backend (the reference), tampered with in memory."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest

from kronika import NewEvent, StreamAppend
from kronika.errors import ValidationError
from kronika.store.integrity import (
    ZERO_HASH,
    append_digests,
    canonical_json,
    chain,
    chain_hash,
    content_digest,
    digest_content,
    global_hash,
)
from kronika.store.memory import MemoryEventStore
from kronika.store.verify import ProblemKind, VerifyReport, verify

# -- the content digest ----------------------------------------------------------------


def test_the_digest_is_sha256_of_the_sorted_json_of_the_documented_list() -> None:
    event_id = uuid.uuid4()
    data, metadata = {"b": 1, "a": [1, {"z": 1, "y": 2}]}, {"correlation_id": "c"}
    expected_json = orjson.dumps(
        ["order-1", str(event_id), "Placed", data, metadata, ["t1", "t2"]],
        option=orjson.OPT_SORT_KEYS,
    )
    digest = content_digest(
        "order-1", event_id, "Placed", data=data, metadata=metadata, tags=("t1", "t2")
    )
    assert digest == hashlib.sha256(expected_json).digest()
    assert digest == content_digest(
        "order-1", str(event_id), "Placed", data=data, metadata=metadata, tags=["t1", "t2"]
    )


def test_key_order_and_spacing_of_stored_json_do_not_change_the_digest() -> None:
    event_id = uuid.uuid4()
    listed = ["s-1", event_id, "T", {"a": 1, "bb": [1.5, "x"]}, {"m": None}, []]
    # What PostgreSQL's jsonb_build_array(...)::text gives: spaces, keys by length.
    jsonb_text = f'["s-1", "{event_id}", "T", {{"a": 1, "bb": [1.5, "x"]}}, {{"m": null}}, []]'
    assert digest_content(listed) == digest_content(jsonb_text)
    assert digest_content(jsonb_text.encode()) == digest_content(listed)


@pytest.mark.parametrize(
    ("written", "read_back"),
    [
        (1e16, 10_000_000_000_000_000),  # jsonb prints no exponent: an integer comes back
        (-1.5e17, -150_000_000_000_000_000),
        (2.0**63, 2**63),
        (-0.0, 0.0),  # jsonb has no negative zero
        (1e20, 1e20),  # beyond 64 bits orjson reads a float again
        (1.5e-7, 1.5e-7),
        (100.0, 100.0),
        (0.1, 0.1),
    ],
)
def test_numbers_digest_as_postgresql_returns_them(written: float, read_back: Any) -> None:
    assert canonical_json({"x": [written]}) == canonical_json({"x": [read_back]})


def test_a_string_that_looks_like_an_exponent_is_left_alone() -> None:
    value = {"note": "1e+16 and -0.0", "n": 2}
    assert canonical_json(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_chains_start_from_zero_bytes_and_fold_in_order() -> None:
    d1, d2 = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
    h1 = hashlib.sha256(ZERO_HASH + d1).digest()
    h2 = hashlib.sha256(h1 + d2).digest()
    assert chain(None, [d1, d2]) == [h1, h2]
    assert chain_hash(None, d1) == h1 == chain_hash(ZERO_HASH, d1)
    assert chain(h1, [d2]) == [h2]
    assert global_hash(ZERO_HASH, h1) == hashlib.sha256(ZERO_HASH + h1).digest()


async def test_append_digests_cover_the_stamped_metadata() -> None:
    async with MemoryEventStore() as store:
        await store.append("s-1", [NewEvent("T", {"a": 1}, tags=["x"])])
        [event] = await store.read_stream("s-1")
    stored = content_digest(
        "s-1", event.id, "T", data=event.data, metadata=event.metadata, tags=event.tags
    )
    assert stored == digest_content(
        ["s-1", str(event.id), "T", event.data, event.metadata, list(event.tags)]
    )
    assert "correlation_id" in event.metadata  # stamped before the digest was taken
    assert append_digests  # used by every backend's append path (see the contract tests)


# -- the verifier on the memory backend ----------------------------------------------------


async def _filled() -> MemoryEventStore:
    store = MemoryEventStore()
    await store.open()
    for i in range(6):
        await store.append(f"order-{i % 3}", [NewEvent("Placed", {"i": i}), NewEvent("Paid", {})])
    await store.append_multi(
        [
            StreamAppend("order-0", [NewEvent("Shipped", {})]),
            StreamAppend("x-1", [NewEvent("A", {})]),
        ]
    )
    return store


def _kinds(report: VerifyReport) -> list[tuple[str, int | None, str | None, int | None]]:
    return [(p.kind.value, p.position, p.stream, p.version) for p in report.problems]


def _entry(store: MemoryEventStore, stream: str, version: int) -> tuple[int, Any]:
    log = store._log  # the tests tamper with the memory log directly
    for position, (_, event) in log.events.items():
        if event.stream == stream and event.version == version:
            return position, event
    raise AssertionError(f"{stream}@{version} not found")


async def test_a_clean_log_verifies_clean_and_records_checkpoints() -> None:
    store = await _filled()
    report = await verify(store.chains, checkpoint_every=4, page_size=3)
    assert report.clean, report.problems
    assert report.events == 14 and report.unchained == 0 and report.streams == 4
    assert report.checkpoints_recorded >= 3
    again = await verify(store.chains)
    assert again.clean and again.checkpoints_checked == report.checkpoints_recorded
    assert again.global_hash == report.global_hash


async def test_altered_data_is_reported_at_its_position() -> None:
    store = await _filled()
    position, event = _entry(store, "order-1", 1)
    store._log.events[position] = ("default", replace(event, data={"forged": True}))
    report = await verify(store.chains)
    assert _kinds(report) == [("altered", position, "order-1", 1)]


async def test_a_removed_event_is_reported_where_the_gap_shows() -> None:
    store = await _filled()
    gone, _ = _entry(store, "order-2", 1)
    after, _ = _entry(store, "order-2", 2)
    del store._log.events[gone]
    report = await verify(store.chains)
    assert _kinds(report) == [("removed", after, "order-2", 1)]


async def test_swapped_versions_are_reported_as_reordered_at_both_positions() -> None:
    store = await _filled()
    first, one = _entry(store, "order-1", 1)
    second, two = _entry(store, "order-1", 2)
    store._log.events[first] = ("default", replace(one, version=2))
    store._log.events[second] = ("default", replace(two, version=1))
    report = await verify(store.chains)
    assert _kinds(report) == [
        ("reordered", first, "order-1", 2),
        ("reordered", second, "order-1", 1),
    ]


async def test_a_rewound_stream_is_caught_by_the_checkpoints() -> None:
    store = await _filled()
    assert (await verify(store.chains)).clean
    # The newest event and the stream row are both rewound: the per-stream checks agree
    # with what is left, the recorded global chain does not.
    position, _ = _entry(store, "x-1", 0)
    del store._log.events[position]
    del store._log.streams[("default", "x-1")]
    report = await verify(store.chains)
    assert [p.kind for p in report.problems] == [ProblemKind.CHECKPOINT]


async def test_purges_through_the_store_are_not_problems() -> None:
    store = await _filled()
    assert (await verify(store.chains, checkpoint_every=2)).checkpoints_recorded > 0
    await store.truncate_stream("order-0", 2)
    await store.delete_stream("order-1")
    await store.append("order-1", [NewEvent("Reopened", {})])
    await store.delete_stream("order-2", hard=True)
    report = await verify(store.chains)
    assert report.clean, report.problems


async def test_a_stopped_run_resumes_and_agrees_with_a_full_one() -> None:
    store = await _filled()
    first = await verify(store.chains, max_events=5, page_size=2)
    assert not first.complete and first.clean and first.checkpoints_recorded == 1
    rest = await verify(store.chains, resume=True, page_size=2)
    assert rest.complete and rest.clean
    assert rest.resumed_from is not None and rest.resumed_from.position == first.last_position
    assert first.events + rest.events == 14
    full = await verify(store.chains)
    assert full.global_hash == rest.global_hash and full.global_events == rest.global_events


async def test_from_position_checks_the_rest_without_the_global_chain() -> None:
    store = await _filled()
    report = await verify(store.chains, from_position=5)
    assert report.clean and report.events == 10 and report.global_hash is None
    assert report.checkpoints_recorded == 0


@pytest.mark.parametrize(
    "options",
    [
        {"resume": True, "from_position": 3},
        {"from_position": 0},
        {"max_events": 0},
        {"checkpoint_every": True},
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    async with MemoryEventStore() as store:
        with pytest.raises(ValidationError):
            await verify(store.chains, **options)


async def test_a_run_that_forgets_streams_looks_them_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("kronika.store.verify.MAX_HEADS", 1)
    store = await _filled()
    report = await verify(store.chains, page_size=2)
    assert report.clean, report.problems
    position, event = _entry(store, "order-2", 3)
    store._log.events[position] = ("default", replace(event, type="Forged"))
    assert _kinds(await verify(store.chains, page_size=2)) == [("altered", position, "order-2", 3)]
