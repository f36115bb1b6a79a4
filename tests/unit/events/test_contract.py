"""The activity-log contract: every malformed kind gets its reason, every valid event its flat row."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelhouse.events import contract
from reelhouse.events.contract import Invalid, ValidationLimits, encode_event, make_event, validate_payload

# The broker's receive time of every message in these tests (2026-11-21T05:00:12.964Z).
REF_MS = 1_795_237_212_964
LIMITS = ValidationLimits()
DEVICE = {"os": "ios", "app_version": "32.1.0", "country": "US", "network": "wifi"}
# The per-type fields a complete event of each type carries (required and optional).
TYPE_EXTRAS = {
    "impression": {"position": 3, "variant": "ranker-b", "propensity": 0.25},
    "play": {"watch_ms": 8200, "video_duration_ms": 15000},
    "like": {},
    "share": {},
    "comment": {},
    "follow": {},
    "skip": {"watch_ms": 400},
}


def event(kind: str = "play", /, **overrides) -> dict:
    """A valid event of type ``kind``; ``overrides`` replace fields (a value of ... deletes one)."""
    built = make_event(
        event_id="9f0c-1",
        event_type=kind,
        user_id="u42",
        video_id="v1337",
        event_time_ms=REF_MS - 5_000,
        session_id="s-77",
        request_id="r-5",
        device=DEVICE,
        **TYPE_EXTRAS[kind],
    )
    for name, value in overrides.items():
        if value is ...:
            built.pop(name, None)
        else:
            built[name] = value
    return built


def rejection(payload: bytes | None, limits: ValidationLimits = LIMITS) -> Invalid:
    with pytest.raises(Invalid) as caught:
        validate_payload(payload, REF_MS, limits)
    return caught.value


def assert_rejected(payload: bytes | None, reason: str, detail: str = "", limits: ValidationLimits = LIMITS) -> None:
    error = rejection(payload, limits)
    assert error.reason == reason, error
    assert detail in error.detail, error
    assert error.reason in contract.REASONS


# ---------------------------------------------------------------------------------- framing


@pytest.mark.parametrize("payload", [b"", None], ids=["empty-bytes", "null-value"])
def test_a_message_without_a_value_is_an_empty_payload(payload):
    assert_rejected(payload, contract.REASON_EMPTY)


def test_size_is_checked_before_parsing_and_the_limit_itself_is_allowed():
    limits = ValidationLimits(max_payload_bytes=300)
    base = encode_event(event("like"))
    # Pad with an unknown (ignored) field so the payload is exactly at, then one byte over, the limit.
    padding = limits.max_payload_bytes - len(encode_event(event("like", pad="")))
    at_limit = encode_event(event("like", pad="x" * padding))
    assert len(base) < len(at_limit) == limits.max_payload_bytes
    assert validate_payload(at_limit, REF_MS, limits)["event_type"] == "like"
    over = encode_event(event("like", pad="x" * (padding + 1)))
    assert_rejected(over, contract.REASON_OVERSIZED, "301 bytes > 300", limits)
    # Garbage that is too large is oversized, not invalid JSON: size wins because it is checked first.
    assert_rejected(b"{" * 301, contract.REASON_OVERSIZED, limits=limits)


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"schema_version": 1,}', b"\xff\xfe\x00", b'{"a": "\xc3"}', b"NaN"],
    ids=["garbage", "trailing-comma", "binary", "bad-utf8", "nan"],
)
def test_unparseable_bytes_are_invalid_json(payload):
    assert_rejected(payload, contract.REASON_BAD_JSON)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[1, 2]", "list"),
        (b"[]", "list"),
        (b"42", "int"),
        (b'"play"', "str"),
        (b"null", "NoneType"),
        (b"true", "bool"),
    ],
)
def test_json_that_is_not_an_object_is_rejected(payload, kind):
    assert_rejected(payload, contract.REASON_NOT_OBJECT, f"top-level JSON is {kind}")


# ---------------------------------------------------------------------------------- version


def test_missing_schema_version_is_a_missing_field():
    assert_rejected(encode_event(event(schema_version=...)), contract.REASON_MISSING, "schema_version")


@pytest.mark.parametrize(
    "version",
    # 2: a future version; "1" / true / 1.0: a 1 of the wrong JSON type; [1] / {}: not even hashable.
    [2, 0, -1, "1", True, 1.0, 1.5, [1], {"v": 1}],
    ids=["2", "0", "-1", "string", "bool", "float-1.0", "float-1.5", "list", "object"],
)
def test_versions_other_than_the_integer_1_are_unsupported(version):
    assert_rejected(encode_event(event(schema_version=version)), contract.REASON_VERSION, "supported: [1]")


# ---------------------------------------------------------------------------------- common fields


@pytest.mark.parametrize("name", [spec.name for spec in contract.COMMON_FIELDS])
def test_each_common_field_is_required(name):
    assert_rejected(encode_event(event(**{name: ...})), contract.REASON_MISSING, name)
    # An explicit null is as absent as a missing key.
    assert_rejected(encode_event(event(**{name: None})), contract.REASON_MISSING, name)


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"event_time": str(REF_MS)}, "event_time must be int, got str"),
        ({"event_time": float(REF_MS)}, "event_time must be int, got float"),
        # JSON true is a Python int; it must never pass as a count or a time.
        ({"event_time": True}, "event_time must be int, got bool"),
        ({"watch_ms": True}, "watch_ms must be int, got bool"),
        ({"watch_ms": "8200"}, "watch_ms must be int, got str"),
        ({"user_id": 42}, "user_id must be str, got int"),
        ({"event_type": ["play"]}, "event_type must be str, got list"),
        ({"request_id": 5}, "request_id must be str, got int"),
    ],
)
def test_a_field_of_the_wrong_json_type_is_a_wrong_type(overrides, detail):
    assert_rejected(encode_event(event("play", **overrides)), contract.REASON_TYPE, detail)


@pytest.mark.parametrize(
    ("event_type", "overrides", "field"),
    [
        ("play", {"user_id": "u 42"}, "user_id"),
        ("play", {"video_id": "v/1337"}, "video_id"),
        ("play", {"event_id": ""}, "event_id"),
        ("play", {"session_id": "s" * 65}, "session_id"),
        ("play", {"request_id": "r#5"}, "request_id"),
        # `$` alone would accept a trailing newline; an id with a newline breaks every downstream join.
        ("play", {"user_id": "u42\n"}, "user_id"),
        ("play", {"watch_ms": -1}, "watch_ms"),
        ("play", {"watch_ms": 86_400_001}, "watch_ms"),
        ("play", {"video_duration_ms": 0}, "video_duration_ms"),
        ("skip", {"watch_ms": -5}, "watch_ms"),
        ("impression", {"position": 10_000}, "position"),
        ("impression", {"position": -1}, "position"),
        ("impression", {"variant": "v" * 65}, "variant"),
        ("impression", {"propensity": 0}, "propensity"),
        ("impression", {"propensity": -0.1}, "propensity"),
        ("impression", {"propensity": 1.5}, "propensity"),
    ],
)
def test_a_value_breaking_its_rule_is_an_invalid_value(event_type, overrides, field):
    error = rejection(encode_event(event(event_type, **overrides)))
    assert error.reason == contract.REASON_VALUE
    assert error.detail.startswith(f"{field} must be ")


@pytest.mark.parametrize(
    ("device", "field"),
    [
        ({**DEVICE, "country": "us"}, "device.country"),
        ({**DEVICE, "country": "USA"}, "device.country"),
        ({**DEVICE, "country": "US\n"}, "device.country"),
        ({**DEVICE, "os": "windows"}, "device.os"),
        ({**DEVICE, "network": "5g"}, "device.network"),
        ({**DEVICE, "app_version": "v32"}, "device.app_version"),
        ({**DEVICE, "app_version": "1.2.3.4.5"}, "device.app_version"),
    ],
)
def test_a_device_value_breaking_its_rule_is_an_invalid_value(device, field):
    error = rejection(encode_event(event("like", device=device)))
    assert error.reason == contract.REASON_VALUE
    assert error.detail.startswith(f"{field} must be ")


def test_empty_request_id_means_organic_and_is_valid():
    assert validate_payload(encode_event(event("like", request_id="")), REF_MS)["request_id"] == ""


# ---------------------------------------------------------------------------------- propensity


@pytest.mark.parametrize(("value", "stored"), [(0.5, 0.5), (1, 1.0), (1.0, 1.0), (1e-9, 1e-9)])
def test_propensity_is_a_json_number_in_0_exclusive_to_1_stored_as_a_float(value, stored):
    row = validate_payload(encode_event(event("impression", propensity=value)), REF_MS)
    assert row["propensity"] == stored
    assert type(row["propensity"]) is float  # a JSON 1 is the probability 1.0


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (0, contract.REASON_VALUE, "propensity must be within (0, 1], got '0'"),
        (0.0, contract.REASON_VALUE, "propensity must be within (0, 1]"),
        (-0.0, contract.REASON_VALUE, "propensity must be within (0, 1]"),
        (-0.1, contract.REASON_VALUE, "propensity must be within (0, 1]"),
        (1.5, contract.REASON_VALUE, "propensity must be within (0, 1]"),
        (2, contract.REASON_VALUE, "propensity must be within (0, 1]"),
        ("0.5", contract.REASON_TYPE, "propensity must be float, got str"),
        (True, contract.REASON_TYPE, "propensity must be float, got bool"),
        ([0.5], contract.REASON_TYPE, "propensity must be float, got list"),
    ],
)
def test_a_propensity_that_is_not_a_probability_above_0_is_rejected(value, reason, detail):
    assert_rejected(encode_event(event("impression", propensity=value)), reason, detail)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_propensity_is_an_invalid_value(value):
    # JSON cannot carry these (the bytes are invalid_json); a decoded object handed to
    # validate_object (the collector's path) still gets its verdict from the bounds.
    with pytest.raises(Invalid) as caught:
        contract.validate_object(event("impression", propensity=value), REF_MS)
    assert caught.value.reason == contract.REASON_VALUE
    assert caught.value.detail.startswith("propensity must be within (0, 1]")


@pytest.mark.parametrize("text", [b"NaN", b"Infinity", b"1e400"])
def test_a_propensity_json_cannot_hold_is_invalid_json(text):
    payload = encode_event(event("impression", propensity=0.25)).replace(b"0.25", text)
    assert_rejected(payload, contract.REASON_BAD_JSON)


def test_propensity_is_an_impression_field_only():
    # Another type's propensity is an unknown field: ignored, not stored.
    row = validate_payload(encode_event(event("like", propensity=0.5)), REF_MS)
    assert "propensity" not in row


@pytest.mark.parametrize("event_type", ["purchase", "PLAY", ""])
def test_an_unknown_event_type_is_rejected(event_type):
    assert_rejected(encode_event(event("like", event_type=event_type)), contract.REASON_EVENT_TYPE, "known: impression")


# ---------------------------------------------------------------------------------- device and type fields


def test_missing_device_is_a_missing_field():
    assert_rejected(encode_event(event("like", device=...)), contract.REASON_MISSING, "device")


@pytest.mark.parametrize(("device", "kind"), [("ios", "str"), ([DEVICE], "list"), (7, "int")])
def test_a_device_that_is_not_an_object_is_a_wrong_type(device, kind):
    assert_rejected(
        encode_event(event("like", device=device)), contract.REASON_TYPE, f"device must be object, got {kind}"
    )


@pytest.mark.parametrize("name", [spec.name for spec in contract.DEVICE_FIELDS])
def test_each_device_field_is_required(name):
    device = {k: v for k, v in DEVICE.items() if k != name}
    assert_rejected(encode_event(event("like", device=device)), contract.REASON_MISSING, f"device.{name}")


@pytest.mark.parametrize("name", ["watch_ms", "video_duration_ms"])
def test_play_without_its_required_fields_is_a_missing_field(name):
    assert_rejected(encode_event(event("play", **{name: ...})), contract.REASON_MISSING, name)


# ---------------------------------------------------------------------------------- timestamps


def test_event_time_bounds_are_inclusive_relative_to_the_broker_time():
    latest = REF_MS + LIMITS.max_clock_skew_ms
    oldest = REF_MS - LIMITS.max_event_age_ms
    assert validate_payload(encode_event(event(event_time=latest)), REF_MS)["event_time"] == latest
    assert validate_payload(encode_event(event(event_time=oldest)), REF_MS)["event_time"] == oldest
    assert_rejected(encode_event(event(event_time=latest + 1)), contract.REASON_TIMESTAMP, "in the future")
    assert_rejected(encode_event(event(event_time=oldest - 1)), contract.REASON_TIMESTAMP, "older than")


@pytest.mark.parametrize(
    ("event_time", "detail"),
    # Unit mix-ups: seconds look 55 years old, microseconds lie ~57,000 years ahead.
    [(REF_MS // 1000, "older than"), (REF_MS * 1000, "in the future"), (-1, "older than")],
    ids=["seconds", "microseconds", "negative"],
)
def test_absurd_timestamps_are_out_of_range(event_time, detail):
    assert_rejected(encode_event(event(event_time=event_time)), contract.REASON_TIMESTAMP, detail)


def test_time_limits_come_from_the_limits_argument():
    tight = ValidationLimits(max_clock_skew_ms=1_000, max_event_age_ms=60_000)
    assert validate_payload(encode_event(event(event_time=REF_MS + 1_000)), REF_MS, tight)
    assert_rejected(encode_event(event(event_time=REF_MS + 1_001)), contract.REASON_TIMESTAMP, limits=tight)
    assert_rejected(encode_event(event(event_time=REF_MS - 60_001)), contract.REASON_TIMESTAMP, limits=tight)


# ---------------------------------------------------------------------------------- valid events


COMMON_ROW = {
    "schema_version": 1,
    "event_id": "9f0c-1",
    "user_id": "u42",
    "video_id": "v1337",
    "event_time": REF_MS - 5_000,
    "session_id": "s-77",
    "request_id": "r-5",
    "device_os": "ios",
    "device_app_version": "32.1.0",
    "device_country": "US",
    "device_network": "wifi",
}


@pytest.mark.parametrize("event_type", contract.EVENT_TYPES)
def test_a_complete_valid_event_of_every_type_gives_its_flat_row(event_type):
    row = validate_payload(encode_event(event(event_type)), REF_MS)
    # The row is the common fields, the device flattened to device_*, and exactly this type's fields.
    assert row == {**COMMON_ROW, "event_type": event_type, **TYPE_EXTRAS[event_type]}
    # Every key is a lake column, so nothing the contract accepts is dropped on the way to bronze.
    assert set(row) <= set(contract.EVENT_COLUMNS.names)


@pytest.mark.parametrize(
    ("event_type", "absent", "expected"),
    [
        ("impression", ("position", "variant", "propensity"), {"position": None, "variant": None, "propensity": None}),
        ("skip", ("watch_ms",), {"watch_ms": None}),
    ],
)
def test_optional_fields_may_be_absent_or_null_and_become_none(event_type, absent, expected):
    missing = event(event_type, **{name: ... for name in absent})
    nulled = event(event_type, **{name: None for name in absent})
    for payload in (encode_event(missing), encode_event(nulled)):
        row = validate_payload(payload, REF_MS)
        assert {name: row[name] for name in absent} == expected
        assert row["event_type"] == event_type


def test_unknown_fields_are_ignored_so_additive_changes_keep_the_version():
    payload = encode_event(event("like", new_field={"x": 1}, device={**DEVICE, "model": "iPhone17,1"}))
    row = validate_payload(payload, REF_MS)
    assert "new_field" not in row and "device_model" not in row
    assert row == {**COMMON_ROW, "event_type": "like"}


def test_every_event_type_is_covered_by_type_fields():
    assert set(contract.TYPE_FIELDS) == set(contract.EVENT_TYPES)
    assert set(contract.OUTCOME_TYPES) == set(contract.EVENT_TYPES) - {"impression"}


# ---------------------------------------------------------------------------------- make / encode


def test_make_event_and_encode_event_round_trip_through_validate_payload():
    built = make_event(
        event_id="e-1",
        event_type="play",
        user_id="u1",
        video_id="v2",
        event_time_ms=REF_MS,
        session_id="s3",
        device=DEVICE,
        watch_ms=10,
        video_duration_ms=20,
        position=None,  # None extras are left out, not sent as null
    )
    assert "position" not in built
    assert built["request_id"] == ""
    assert built["schema_version"] == contract.SCHEMA_VERSION
    payload = encode_event(built)
    assert isinstance(payload, bytes) and b" " not in payload  # compact wire format
    assert orjson.loads(payload) == built
    row = validate_payload(payload, REF_MS)
    assert row == {
        "schema_version": 1,
        "event_id": "e-1",
        "event_type": "play",
        "user_id": "u1",
        "video_id": "v2",
        "event_time": REF_MS,
        "session_id": "s3",
        "request_id": "",
        "device_os": "ios",
        "device_app_version": "32.1.0",
        "device_country": "US",
        "device_network": "wifi",
        "watch_ms": 10,
        "video_duration_ms": 20,
    }


def test_make_event_copies_the_device_mapping():
    device = dict(DEVICE)
    built = make_event(
        event_id="e", event_type="like", user_id="u", video_id="v", event_time_ms=REF_MS, session_id="s", device=device
    )
    device["os"] = "android"
    assert built["device"]["os"] == "ios"


# ---------------------------------------------------------------------------------- properties

IDS = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)  # surrogates are not UTF-8


@st.composite
def valid_events(draw) -> tuple[dict, int]:
    event_type = draw(st.sampled_from(contract.EVENT_TYPES))
    extras: dict = {}
    if event_type == "play":
        extras["watch_ms"] = draw(st.integers(0, 86_400_000))
        extras["video_duration_ms"] = draw(st.integers(1, 86_400_000))
    elif event_type == "skip":
        extras["watch_ms"] = draw(st.none() | st.integers(0, 86_400_000))
    elif event_type == "impression":
        extras["position"] = draw(st.none() | st.integers(0, 9_999))
        extras["variant"] = draw(st.none() | SAFE_TEXT)
        extras["propensity"] = draw(st.none() | st.just(1) | st.floats(0, 1, exclude_min=True))
    device = {
        "os": draw(st.sampled_from(sorted(contract.DEVICE_OS))),
        "app_version": draw(st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}", fullmatch=True)),
        "country": draw(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
        "network": draw(st.sampled_from(sorted(contract.NETWORKS))),
    }
    reference = draw(st.integers(LIMITS.max_event_age_ms, 4_102_444_800_000))  # up to 2100
    built = make_event(
        event_id=draw(IDS),
        event_type=event_type,
        user_id=draw(IDS),
        video_id=draw(IDS),
        event_time_ms=draw(st.integers(reference - LIMITS.max_event_age_ms, reference + LIMITS.max_clock_skew_ms)),
        session_id=draw(IDS),
        request_id=draw(st.just("") | IDS),
        device=device,
        **extras,
    )
    return built, reference


@settings(max_examples=300, deadline=None)
@given(valid_events())
def test_any_event_built_within_the_rules_validates_to_its_own_values(case):
    built, reference = case
    row = validate_payload(encode_event(built), reference)
    for spec in contract.COMMON_FIELDS:
        assert row[spec.name] == built[spec.name]
    for spec in contract.DEVICE_FIELDS:
        assert row["device_" + spec.name] == built["device"][spec.name]
    required, optional = contract.TYPE_FIELDS[built["event_type"]]
    for spec in (*required, *optional):
        assert row[spec.name] == built.get(spec.name)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_nothing_but_invalid(payload):
    try:
        row = validate_payload(payload, REF_MS)
    except Invalid as e:
        assert e.reason in contract.REASONS
    else:  # vanishingly unlikely, but then it really is a valid event
        assert row["schema_version"] == 1


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(contract.EVENT_TYPES),
    st.sampled_from(
        ["schema_version", "device", *(s.name for s in contract.COMMON_FIELDS), "watch_ms", "position", "propensity"]
    ),
    JSON_VALUES,
)
def test_any_json_value_in_any_field_raises_nothing_but_invalid(event_type, field, value):
    # Random bytes rarely parse; this puts arbitrary JSON where the contract looks, one field at a time.
    payload = encode_event(event(event_type, **{field: value}))
    try:
        validate_payload(payload, REF_MS)
    except Invalid as e:
        assert e.reason in contract.REASONS
