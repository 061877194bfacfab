"""The CLI's parsing of command-line text into domain values."""

from __future__ import annotations

import json
import uuid

import pytest

from kronika import ANY, NO_STREAM, STREAM_EXISTS, ValidationError
from kronika.cli.output import exit_code_for
from kronika.cli.parsing import events_from_ndjson, parse_expected_version, parse_json_object
from kronika.errors import ConcurrencyError, ConfigurationError, StreamNotFound


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("any", ANY),
        ("ANY", ANY),
        ("no_stream", NO_STREAM),
        ("no-stream", NO_STREAM),
        ("stream_exists", STREAM_EXISTS),
        ("0", 0),
        (" 12 ", 12),
    ],
)
def test_expected_versions(text: str, expected: object) -> None:
    assert parse_expected_version(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5", "later", "none", "²"])
def test_bad_expected_versions_name_the_option(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_expected_version(text)
    assert caught.value.errors[0][0] == "--expected-version"
    assert repr(text) in caught.value.message


def test_json_objects_only() -> None:
    assert parse_json_object('{"a": [1]}', "DATA_JSON") == {"a": [1]}
    for text in ("[1]", "3", '"x"', "{", ""):
        with pytest.raises(ValidationError, match="DATA_JSON"):
            parse_json_object(text, "DATA_JSON")


def test_ndjson_lines_become_events_with_extra_tags() -> None:
    event_id = uuid.uuid4()
    lines = [
        json.dumps({"type": "A", "data": {"x": 1}, "id": str(event_id), "tags": ["t"]}),
        "   ",
        json.dumps({"type": "B", "data": {}, "metadata": {"m": 1}}),
    ]
    first, second = events_from_ndjson(lines, extra_tags=["all"])
    assert (first.type, first.id, tuple(first.tags)) == ("A", event_id, ("t", "all"))
    assert (second.type, second.metadata, tuple(second.tags)) == ("B", {"m": 1}, ("all",))


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"data": {}}', "stdin line 1: type"),
        ('{"type": "A"}', "stdin line 1: data"),
        ('{"type": "A", "data": 3}', "stdin line 1: data"),
        ('{"type": "A", "data": {}, "id": "x"}', "stdin line 1: id"),
        ('{"type": "A", "data": {}, "tags": "t"}', "stdin line 1: tags"),
        ('{"type": "A", "data": {}, "typo": 1}', "stdin line 1"),
        ("[]", "stdin line 1"),
    ],
)
def test_bad_ndjson_lines_name_line_and_field(line: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        events_from_ndjson([line])
    assert caught.value.errors[0][0] == field


def test_empty_stdin_is_rejected() -> None:
    with pytest.raises(ValidationError, match="stdin"):
        events_from_ndjson(["", "\n"])


def test_exit_codes() -> None:
    assert exit_code_for(ValidationError("bad", "x")) == 2
    assert exit_code_for(ConfigurationError("bad")) == 2
    assert exit_code_for(ConcurrencyError("s", 1, 2)) == 1
    assert exit_code_for(StreamNotFound("s")) == 1
