"""Everything the service refuses before doing any work: parameters, tokens, bodies, event batches."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from reelhouse.config import ServingConfig
from reelhouse.errors import ConfigError
from reelhouse.events.contract import ValidationLimits, make_event
from reelhouse.serving.collector import parse_events
from reelhouse.serving.security import RequestError, authorized, parse_feed_params, read_bounded, require_token

SERVING = ServingConfig(token="s3cret-token", default_k=10, max_k=50)


def reasons(error: RequestError) -> dict[str, str]:
    return {p.get("field") or str(p.get("index")): p["reason"] for p in error.problems}


def test_a_minimal_request_gets_the_defaults():
    params = parse_feed_params([("user_id", "u-1.a:b_c")], SERVING)
    assert (params.user_id, params.k, params.session_id) == ("u-1.a:b_c", 10, None)
    assert params.device == {"os": "other", "app_version": "0", "country": "ZZ", "network": "unknown"}


def test_every_parameter_is_taken():
    params = parse_feed_params(
        [
            ("user_id", "u1"),
            ("k", "50"),
            ("session_id", "s1"),
            ("os", "ios"),
            ("app_version", "32.1.0"),
            ("country", "BR"),
            ("network", "wifi"),
        ],
        SERVING,
    )
    assert params.k == 50 and params.session_id == "s1"
    assert params.device == {"os": "ios", "app_version": "32.1.0", "country": "BR", "network": "wifi"}


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ([], "user_id", "missing_field"),
        ([("user_id", "")], "user_id", "invalid_value"),
        ([("user_id", "u 1")], "user_id", "invalid_value"),
        ([("user_id", "u1\n")], "user_id", "invalid_value"),  # a trailing newline is not an id
        ([("user_id", "u" * 65)], "user_id", "invalid_value"),
        ([("user_id", "u1'; DROP TABLE x;--")], "user_id", "invalid_value"),
        ([("user_id", "u1"), ("k", "0")], "k", "invalid_value"),
        ([("user_id", "u1"), ("k", "51")], "k", "invalid_value"),
        ([("user_id", "u1"), ("k", "-1")], "k", "invalid_value"),
        ([("user_id", "u1"), ("k", "1e3")], "k", "invalid_value"),
        ([("user_id", "u1"), ("k", "99999999999999999999")], "k", "invalid_value"),
        ([("user_id", "u1"), ("session_id", "s/1")], "session_id", "invalid_value"),
        ([("user_id", "u1"), ("os", "windows")], "os", "invalid_value"),
        ([("user_id", "u1"), ("network", "5g")], "network", "invalid_value"),
        ([("user_id", "u1"), ("country", "usa")], "country", "invalid_value"),
        ([("user_id", "u1"), ("app_version", "1.x")], "app_version", "invalid_value"),
        ([("user_id", "u1"), ("user", "u2")], "user", "unknown_parameter"),
        ([("user_id", "u1"), ("user_id", "u2")], "user_id", "repeated_parameter"),
    ],
)
def test_invalid_parameters_are_refused_with_their_reason(query, field, reason):
    with pytest.raises(RequestError) as raised:
        parse_feed_params(query, SERVING)
    assert raised.value.status == 422
    assert reasons(raised.value)[field] == reason
    assert all(p["detail"] for p in raised.value.problems)


def test_every_problem_is_listed_at_once():
    with pytest.raises(RequestError) as raised:
        parse_feed_params([("k", "0"), ("os", "x")], SERVING)
    assert set(reasons(raised.value)) == {"user_id", "k", "os"}


def test_the_token_is_required_and_compared_exactly():
    assert require_token(SERVING) == "s3cret-token"
    for missing in (None, "", "   "):
        with pytest.raises(ConfigError, match="REELHOUSE__SERVING__TOKEN"):
            require_token(ServingConfig(token=missing))
    assert authorized("Bearer s3cret-token", "s3cret-token")
    assert authorized("bearer s3cret-token", "s3cret-token")
    for header in (None, "", "Bearer", "Bearer s3cret", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token"):
        assert not authorized(header, "s3cret-token")
    assert not authorized("Bearer x", None)


def test_an_empty_token_or_credential_never_authorises():
    for token in (None, "", " ", "\t\n"):
        for header in ("Bearer ", "Bearer", "Bearer  ", f"Bearer {token}", "Bearer \t", "bearer x"):
            assert not authorized(header, token), (header, token)
    assert not authorized("Bearer ", "s3cret-token") and not authorized("Bearer    ", "s3cret-token")


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_configured_token_refuses_to_start(token, monkeypatch):
    import uvicorn

    from reelhouse.config import load_config
    from reelhouse.serving.server import ServingServer, run_server
    from tests.conftest import PROJECT_DIR

    def started(*args, **kwargs):
        raise AssertionError("the service started with an empty token")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(uvicorn.Server, "run", started)
    base = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})
    config = base.model_copy(update={"serving": base.serving.model_copy(update={"token": token})})
    with pytest.raises(ConfigError, match="serving.token is not set"):
        ServingServer(config)
    with pytest.raises(ConfigError, match="serving.token is not set"):
        run_server(config)


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


def test_bodies_are_bounded_with_or_without_a_declared_length():
    assert asyncio.run(read_bounded(_chunks(b"ab", b"cd"), "4", 4)) == b"abcd"
    assert asyncio.run(read_bounded(_chunks(b"ab", b"cd"), None, 4)) == b"abcd"
    for declared, parts in (("5", (b"abcde",)), (None, (b"abc", b"de")), ("1", (b"abcde",))):
        with pytest.raises(RequestError) as raised:
            asyncio.run(read_bounded(_chunks(*parts), declared, 4))
        assert raised.value.status == 413 and raised.value.problems[0]["reason"] == "body_too_large"
    with pytest.raises(RequestError) as raised:
        asyncio.run(read_bounded(_chunks(b""), "-3", 4))
    assert raised.value.status == 400


# ----------------------------------------------------------------------------- event batches
NOW_MS = int(time.time() * 1000)
LIMITS = ValidationLimits()


def event(**overrides) -> dict:
    base = make_event(
        event_id="e1",
        event_type="like",
        user_id="u1",
        video_id="v1",
        event_time_ms=NOW_MS,
        session_id="s1",
        request_id="r-1",
        device={"os": "ios", "app_version": "1.0", "country": "US", "network": "wifi"},
    )
    return {**base, **overrides}


def body(events) -> bytes:
    return orjson.dumps({"events": events})


def test_a_valid_batch_comes_back_whole():
    batch = [event(), event(event_id="e2", event_type="play", watch_ms=5000, video_duration_ms=10_000)]
    assert parse_events(body(batch), NOW_MS, LIMITS, 10) == batch
    assert parse_events(body([]), NOW_MS, LIMITS, 10) == []


def test_each_invalid_event_is_reported_with_its_contract_reason():
    batch = [
        event(),
        {k: v for k, v in event().items() if k != "user_id"},
        event(event_type="stare"),
        event(event_time=NOW_MS + 3 * 86_400_000),
        event(event_type="play"),  # no watch_ms / video_duration_ms
        event(user_id="u 1"),
        "not an object",
    ]
    with pytest.raises(RequestError) as raised:
        parse_events(body(batch), NOW_MS, LIMITS, 10)
    assert raised.value.status == 422
    got = {p["index"]: p["reason"] for p in raised.value.problems}
    assert got == {
        1: "missing_field",
        2: "unknown_event_type",
        3: "timestamp_out_of_range",
        4: "missing_field",
        5: "invalid_value",
        6: "not_an_object",
    }


def test_malformed_bodies_and_too_many_events():
    for raw, reason in (
        (b"{", "invalid_json"),
        (b"[]", "invalid_body"),
        (b'{"events": {}}', "invalid_body"),
        (b'{"events": [], "extra": 1}', "invalid_body"),
    ):
        with pytest.raises(RequestError) as raised:
            parse_events(raw, NOW_MS, LIMITS, 10)
        assert raised.value.status == 422 and raised.value.problems[0]["reason"] == reason
    with pytest.raises(RequestError) as raised:
        parse_events(body([event()] * 11), NOW_MS, LIMITS, 10)
    assert raised.value.status == 413 and raised.value.problems[0]["reason"] == "too_many_events"


def test_an_event_larger_than_ingestion_accepts_is_refused():
    large = event(comment="x" * 20_000)  # unknown fields pass the contract, but the message would be quarantined
    with pytest.raises(RequestError) as raised:
        parse_events(body([large]), NOW_MS, LIMITS, 10)
    assert raised.value.problems[0]["reason"] == "oversized_payload"
