"""Domain values validate their input where they are made."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from kronika import ANY, NO_STREAM, AppendCondition, NewEvent, StreamAppend, ValidationError
from kronika.domain.events import category_of, check_expected_version


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [f for f, _ in exc.value.errors]


def test_new_event_generates_an_id() -> None:
    a, b = NewEvent("A", {}), NewEvent("A", {})
    assert isinstance(a.id, uuid.UUID)
    assert a.id != b.id


def test_new_event_accepts_a_uuid_string() -> None:
    text = str(uuid.uuid4())
    assert NewEvent("A", {}, id=text).id == uuid.UUID(text)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "", "data": {}}, "type"),
        ({"type": "   ", "data": {}}, "type"),
        ({"type": "A\x00", "data": {}}, "type"),
        ({"type": "T" * 257, "data": {}}, "type"),
        ({"type": 5, "data": {}}, "type"),
        ({"type": "A", "data": [1]}, "data"),
        ({"type": "A", "data": "text"}, "data"),
        ({"type": "A", "data": {1: "x"}}, "data"),
        ({"type": "A", "data": {}, "metadata": 3}, "metadata"),
        ({"type": "A", "data": {}, "id": "not-a-uuid"}, "id"),
        ({"type": "A", "data": {}, "id": 12}, "id"),
        ({"type": "A", "data": {}, "tags": "single"}, "tags"),
        ({"type": "A", "data": {}, "tags": [""]}, "tags[0]"),
        ({"type": "A", "data": {}, "tags": ["ok", "x\ty"]}, "tags[1]"),
        ({"type": "A", "data": {}, "tags": [f"t{i}" for i in range(65)]}, "tags"),
    ],
)
def test_new_event_rejects_bad_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        NewEvent(**kwargs)  # type: ignore[arg-type]
    assert fields(info) == [field]
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(ANY, ANY), ("no_stream", NO_STREAM), (0, 0), (17, 17)],
)
def test_expected_versions(value: object, expected: object) -> None:
    assert check_expected_version(value) == expected


@pytest.mark.parametrize("value", [-1, True, 1.5, "latest", None])
def test_bad_expected_versions(value: object) -> None:
    with pytest.raises(ValidationError):
        check_expected_version(value)


def test_category_is_the_name_before_the_first_dash() -> None:
    assert category_of("order-1-2") == "order"
    assert category_of("order") == "order"


def test_conditions_need_types_or_tags() -> None:
    with pytest.raises(ValidationError):
        AppendCondition()
    with pytest.raises(ValidationError):
        AppendCondition(types="A")
    with pytest.raises(ValidationError):
        AppendCondition(types=["A"], after=-1)


def test_condition_matching() -> None:
    condition = AppendCondition(types=["A", "B"], tags=["x", "y"])
    assert condition.matches("A", ["x", "y", "z"])
    assert not condition.matches("A", ["x"])
    assert not condition.matches("C", ["x", "y"])
    assert AppendCondition(tags=["x"]).matches("Anything", ["x"])


def test_stream_append_validates() -> None:
    with pytest.raises(ValidationError):
        StreamAppend("", [])
    with pytest.raises(ValidationError):
        StreamAppend("s-1", [NewEvent("A", {})], expected_version=-3)
    one = NewEvent("A", {})
    with pytest.raises(ValidationError):
        StreamAppend("s-1", [one, one])


def test_generated_ids_are_time_ordered_uuid7() -> None:
    from kronika.domain.events import new_event_id

    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    milliseconds = [i.int >> 80 for i in ids]
    assert milliseconds == sorted(milliseconds)


def test_recorded_events_from_rows_equal_constructed_ones() -> None:
    from datetime import UTC, datetime

    from kronika import RecordedEvent

    values = (uuid.uuid4(), "s-1", 3, 99, "A", {"x": 1}, {"m": 2}, ("t",), datetime.now(UTC))
    names = [f.name for f in dataclasses.fields(RecordedEvent)]
    built = RecordedEvent(**dict(zip(names, values, strict=True)))
    assert RecordedEvent.from_row(*values) == built
