"""The client's pure parts, without a network: options, wire JSON, problem mapping, SSE."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

import kronika
from kronika.domain.events import NO_STREAM, AppendCondition, NewEvent, StreamAppend
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    ConfigurationError,
    ConflictError,
    DuplicateEventError,
    Forbidden,
    KronikaError,
    NotFound,
    RateLimited,
    StreamDeleted,
    StreamNotFound,
    Unavailable,
    ValidationError,
)
from kronika.store.base import PreparedAppend, _prepare
from kronika.store.http import HttpEventStore
from kronika.store.http.config import HttpConfig
from kronika.store.http.live import Backoff
from kronika.store.http.problems import error_from_problem, error_from_response
from kronika.store.http.sse import FrameParser
from kronika.store.http.transport import stream_path
from kronika.store.http.wire import (
    append_body,
    append_multi_body,
    event_from_json,
    multi_result,
    stream_info_from_json,
)

# -- options ----------------------------------------------------------------------------


def test_http_urls_open_the_http_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KRONIKA_TOKEN", raising=False)
    store = kronika.open_store("http://127.0.0.1:8080/", token="s3cret", timeout=2)
    assert isinstance(store, HttpEventStore)
    assert store.engine == "http"
    assert store.config.base_url == "http://127.0.0.1:8080"
    assert (store.config.token, store.config.timeout) == ("s3cret", 2.0)
    assert "s3cret" not in repr(store) + repr(store.config)
    assert kronika.open_store("https://kronika.example:443?max_connections=3").engine == "http"


def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONIKA_TOKEN", "from-env")
    assert HttpConfig.from_url("http://h:1").token == "from-env"
    assert HttpConfig.from_url("http://h:1", token="given").token == "given"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://h:1", {"colour": "red"}, "unknown store option 'colour'"),
        ("http://h:1", {"timeout": 0}, "'timeout'"),
        ("http://h:1", {"max_connections": "many"}, "'max_connections'"),
        ("http://h:1", {"verify": "/no/such/ca.pem"}, "'verify'"),
        ("http://user:pw@h:1", {}, "not in the URL"),
        ("http://", {}, "http://host:port"),
    ],
)
def test_bad_options_are_refused(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        kronika.open_store(url, **options)


def test_verify_takes_a_flag_or_a_ca_file(tmp_path: object) -> None:
    assert HttpConfig.from_url("http://h:1?verify=false").verify is False
    assert HttpConfig.from_url("http://h:1").verify is True


async def test_migrate_is_refused_with_what_to_do_instead() -> None:
    store = kronika.open_store("http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="kronika migrate"):
        await store.migrate()


async def test_an_unreachable_server_is_unavailable_naming_the_url() -> None:
    async with kronika.open_store("http://127.0.0.1:9", timeout=2) as store:
        with pytest.raises(Unavailable, match=r"http://127\.0\.0\.1:9") as info:
            await store.head_position()
        assert not isinstance(info.value.__cause__, httpx.HTTPError)


# -- wire JSON --------------------------------------------------------------------------


def _prepared(*events: NewEvent, stream: str = "s-1") -> PreparedAppend:
    return _prepare(StreamAppend(stream, events, expected_version=NO_STREAM), "events")


def test_append_bodies_carry_the_stamped_events() -> None:
    event = NewEvent("Placed", {"total": 1.5}, tags=("t:1",))
    body = orjson.loads(append_body(_prepared(event), AppendCondition(types=["X"], after=3)))
    assert body["expected_version"] == "no_stream"
    [sent] = body["events"]
    assert sent["id"] == str(event.id)
    assert (sent["type"], sent["data"], sent["tags"]) == ("Placed", {"total": 1.5}, ["t:1"])
    assert sent["metadata"]["correlation_id"] == str(event.id)
    assert body["condition"] == {"types": ["X"], "tags": [], "after": 3}
    multi = orjson.loads(append_multi_body([_prepared(event), _prepared(stream="s-2")], None))
    assert [s["stream"] for s in multi["streams"]] == ["s-1", "s-2"]
    assert "condition" not in multi


def test_recorded_events_round_trip_from_json() -> None:
    event_id = uuid.uuid4()
    got = event_from_json(
        {
            "id": str(event_id),
            "stream": "order-1",
            "version": 3,
            "position": 17,
            "type": "Placed",
            "data": {"a": 1},
            "metadata": {"m": 2},
            "tags": ["x"],
            "recorded_at": "2026-11-22T10:00:00.123456+00:00",
        }
    )
    assert (got.id, got.stream, got.version, got.position) == (event_id, "order-1", 3, 17)
    assert got.recorded_at == datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert got.tags == ("x",)
    assert got.category == "order"


def test_malformed_answers_are_kronika_errors() -> None:
    with pytest.raises(KronikaError, match="malformed event"):
        event_from_json({"id": "not-a-uuid"})
    with pytest.raises(KronikaError, match="malformed stream info"):
        stream_info_from_json({"stream": "s", "state": "weird"})
    with pytest.raises(KronikaError, match="malformed multi-stream"):
        multi_result({"streams": "nope"})


def test_stream_names_are_percent_encoded_in_paths() -> None:
    assert stream_path("a/b c?d#e%") == "/v1/streams/a%2Fb%20c%3Fd%23e%25"
    assert stream_path("žluť", "/info") == "/v1/streams/%C5%BElu%C5%A5/info"


# -- problem+json -> the same error class -------------------------------------------------


def _problem(status: int, code: str, detail: str = "x", **extra: object) -> dict[str, object]:
    return {"type": f"https://kronika.dev/problems/{code}", "title": code, "status": status,
            "code": code, "detail": detail, **extra}  # fmt: skip


def test_every_error_maps_back_with_its_fields() -> None:
    error = ConcurrencyError("s-1", 1, 2)
    got = error_from_problem(409, _problem(409, **error.to_dict()), {})
    assert isinstance(got, ConcurrencyError)
    assert (got.stream, got.expected, got.actual, str(got)) == ("s-1", 1, 2, str(error))
    got = error_from_problem(
        409, _problem(409, **ConcurrencyError("s", "no_stream", 0).to_dict()), {}
    )
    assert isinstance(got, ConcurrencyError)
    assert (got.expected, got.actual) == ("no_stream", 0)

    invalid = ValidationError([("events[0].type", "must not be empty"), ("limit", "bad")])
    got = error_from_problem(422, _problem(422, **invalid.to_dict()), {})
    assert isinstance(got, ValidationError)
    assert got.errors == invalid.errors

    got = error_from_problem(429, _problem(429, "rate_limited"), {"retry-after": "7"})
    assert isinstance(got, RateLimited)
    assert got.retry_after == 7
    got = error_from_problem(503, _problem(503, "unavailable"), {"retry-after": "2"})
    assert isinstance(got, Unavailable)
    assert got.retry_after == 2

    got = error_from_problem(409, _problem(409, "append_condition_failed", position=9), {})
    assert isinstance(got, ConditionFailed)
    assert got.position == 9
    got = error_from_problem(410, _problem(410, "stream_deleted"), {}, stream="s-9")
    assert isinstance(got, StreamDeleted)
    assert got.stream == "s-9"
    got = error_from_problem(404, _problem(404, "stream_not_found"), {}, stream="s-8")
    assert isinstance(got, StreamNotFound)
    assert got.stream == "s-8"
    assert isinstance(error_from_problem(409, _problem(409, "duplicate_event_id"), {}),
                      DuplicateEventError)  # fmt: skip


def test_unknown_codes_map_by_status_to_the_base_class() -> None:
    assert type(error_from_problem(409, _problem(409, "brand_new"), {})) is ConflictError
    assert type(error_from_problem(404, _problem(404, "brand_new"), {})) is NotFound
    assert type(error_from_problem(403, _problem(403, "brand_new"), {})) is Forbidden
    assert type(error_from_problem(413, _problem(413, "too_big"), {})) is ValidationError
    assert type(error_from_problem(500, _problem(500, "brand_new"), {})) is KronikaError


def test_a_proxy_error_page_is_unavailable() -> None:
    request = httpx.Request("GET", "http://h:1/v1/head")
    response = httpx.Response(502, text="<html>Bad gateway</html>", request=request)
    got = error_from_response(response)
    assert isinstance(got, Unavailable)
    assert "502" in str(got)


# -- Server-Sent Events -----------------------------------------------------------------


def test_sse_frames_are_parsed_by_the_whatwg_rules() -> None:
    parser = FrameParser()
    lines = [": keep-alive", "", "id: 7", "event: event", "data: {\"a\":", "data:1}", "",
             "retry: 250", "data: no id or event", "", "id: 8", ""]  # fmt: skip
    frames = [f for f in map(parser.feed, lines) if f is not None]
    assert [(f.event, f.data, f.id) for f in frames] == [
        ("event", '{"a":\n1}', "7"),
        ("message", "no id or event", "7"),
    ]
    assert parser.retry_ms == 250
    assert parser.last_id == "8"


def test_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0.5 <= d <= 1.0 for d in delays[4:])
    assert backoff.next_delay(at_least=3) == 3
    backoff.reset()
    assert backoff.next_delay() <= 0.1
