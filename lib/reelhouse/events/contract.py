"""The activity-log contract: one definition used by every producer, stream job and batch job.

An event travels as one UTF-8 JSON object per Kafka message (key: ``user_id``). Version 1::

    {"schema_version": 1, "event_id": "9f0c...", "event_type": "play",
     "user_id": "u42", "video_id": "v1337", "event_time": 1795237212964,
     "session_id": "s-77", "request_id": "r-5",
     "device": {"os": "ios", "app_version": "32.1.0", "country": "US", "network": "wifi"},
     "watch_ms": 8200, "video_duration_ms": 15000}

``event_time`` is epoch milliseconds (UTC). ``request_id`` links an outcome to the feed response
that showed the video; it is ``""`` for organic events. The per-type fields are listed in
:data:`TYPE_FIELDS`. ``docs/events.md`` documents the same contract for people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import msgspec
import orjson
import pyarrow as pa

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

EVENT_TYPES = ("impression", "play", "like", "share", "comment", "follow", "skip")
OUTCOME_TYPES = ("play", "like", "share", "comment", "follow", "skip")

DEVICE_OS = frozenset({"ios", "android", "web", "other"})
NETWORKS = frozenset({"wifi", "cellular", "ethernet", "offline", "unknown"})


# Reasons a message is quarantined; the first word of every quarantine `reason`.
REASON_EMPTY = "empty_payload"
REASON_OVERSIZED = "oversized_payload"
REASON_BAD_JSON = "invalid_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_VERSION = "unsupported_version"
REASON_MISSING = "missing_field"
REASON_TYPE = "wrong_type"
REASON_VALUE = "invalid_value"
REASON_EVENT_TYPE = "unknown_event_type"
REASON_TIMESTAMP = "timestamp_out_of_range"
REASONS = (
    REASON_EMPTY,
    REASON_OVERSIZED,
    REASON_BAD_JSON,
    REASON_NOT_OBJECT,
    REASON_VERSION,
    REASON_MISSING,
    REASON_TYPE,
    REASON_VALUE,
    REASON_EVENT_TYPE,
    REASON_TIMESTAMP,
)


# Control flow inside validation (it becomes a quarantine reason), hence not in errors.py.
class Invalid(Exception):
    """Raised inside validation; carries the quarantine reason and a human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FieldSpec:
    """One field of the contract, declared once; both validators below are derived from it."""

    name: str
    kind: type  # str, int or float (which takes a JSON integer too: see _ACCEPTED)
    pattern: str | None = None
    choices: frozenset[str] | None = None
    ge: int | None = None
    gt: int | None = None  # an exclusive lower bound, for a float that must be positive
    le: int | None = None
    max_length: int | None = None

    @property
    def rule(self) -> str:
        if self.choices is not None:
            return f"one of {sorted(self.choices)}"
        if self.pattern is not None:
            return f"matching {self.pattern}"
        if self.max_length is not None:
            return f"at most {self.max_length} chars"
        if self.gt is not None:
            return f"within ({self.gt}, {self.le}]"
        if self.ge is not None or self.le is not None:
            return f"within [{self.ge}, {self.le}]"
        return self.kind.__name__

    def check(self, value: Any) -> bool:
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        if self.ge is not None and value < self.ge:
            return False
        # Written so that NaN fails it (every comparison with NaN is false).
        if self.gt is not None and not value > self.gt:
            return False
        return self.le is None or value <= self.le


_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_DAY_MS = 86_400_000

COMMON_FIELDS = (
    FieldSpec("event_id", str, pattern=_ID_PATTERN),
    FieldSpec("event_type", str),  # checked against TYPE_FIELDS, for its own reason
    FieldSpec("user_id", str, pattern=_ID_PATTERN),
    FieldSpec("video_id", str, pattern=_ID_PATTERN),
    FieldSpec("event_time", int),
    FieldSpec("session_id", str, pattern=_ID_PATTERN),
    FieldSpec("request_id", str, pattern=r"^[A-Za-z0-9_.:\-]{0,64}$"),
)
DEVICE_FIELDS = (
    FieldSpec("os", str, choices=DEVICE_OS),
    FieldSpec("app_version", str, pattern=r"^[0-9]{1,4}(\.[0-9]{1,4}){0,3}$"),
    FieldSpec("country", str, pattern=r"^[A-Z]{2}$"),
    FieldSpec("network", str, choices=NETWORKS),
)
# Per-type fields: required ones first, then optional ones (absent or null allowed).
TYPE_FIELDS: Mapping[str, tuple[tuple[FieldSpec, ...], tuple[FieldSpec, ...]]] = {
    "impression": (
        (),
        (
            FieldSpec("position", int, ge=0, le=9_999),
            FieldSpec("variant", str, max_length=64),
            # The probability that the serving policy showed this video at this position, given
            # the request's candidates (serving/rerank.py explore): for off-policy evaluation.
            FieldSpec("propensity", float, gt=0, le=1),
        ),
    ),
    "play": (
        (
            FieldSpec("watch_ms", int, ge=0, le=_DAY_MS),
            FieldSpec("video_duration_ms", int, ge=1, le=_DAY_MS),
        ),
        (),
    ),
    "like": ((), ()),
    "share": ((), ()),
    "comment": ((), ()),
    "follow": ((), ()),
    "skip": ((), (FieldSpec("watch_ms", int, ge=0, le=_DAY_MS),)),
}


@dataclass(frozen=True)
class ValidationLimits:
    """Bounds that make a message invalid even when well formed."""

    max_payload_bytes: int = 16_384
    max_clock_skew_ms: int = 86_400_000
    max_event_age_ms: int = 365 * 86_400_000


# The Python types a field of each kind takes. JSON has one number type, so a float field takes an
# integer too (1 is the probability 1.0) and the row holds it as a float, as msgspec's float does on
# the fast path. An int field stays strict: 1.0 for a count or a time is a producer's bug.
_ACCEPTED: Mapping[type, tuple[type, ...]] = {float: (int, float)}


def _check_field(obj: Mapping[str, Any], spec: FieldSpec, prefix: str, required: bool) -> Any:
    value = obj.get(spec.name)
    name = prefix + spec.name
    if value is None:
        if required:
            raise Invalid(REASON_MISSING, name)
        return None
    # bool is an int in Python; a JSON true is never a valid count, time or probability.
    if isinstance(value, bool) or not isinstance(value, _ACCEPTED.get(spec.kind, spec.kind)):
        kind = spec.kind.__name__ if isinstance(spec.kind, type) else "/".join(k.__name__ for k in spec.kind)
        raise Invalid(REASON_TYPE, f"{name} must be {kind}, got {type(value).__name__}")
    if not spec.check(value):
        raise Invalid(REASON_VALUE, f"{name} must be {spec.rule}, got {str(value)[:80]!r}")
    return float(value) if spec.kind is float else value


def validate_object(obj: Any, reference_time_ms: int, limits: ValidationLimits = ValidationLimits()) -> dict[str, Any]:
    """Check a decoded event against the contract and return its flat bronze row.

    ``reference_time_ms`` is when the broker received the message; an event time too far
    from it either way is an absurd timestamp (a broken clock, a unit mix-up).
    """
    if not isinstance(obj, dict):
        raise Invalid(REASON_NOT_OBJECT, f"top-level JSON is {type(obj).__name__}")
    version = obj.get("schema_version")
    if version is None:
        raise Invalid(REASON_MISSING, "schema_version")
    # Only a JSON integer: true and 1.0 equal 1 in Python, and a list or object is unhashable.
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
        raise Invalid(REASON_VERSION, f"schema_version {str(version)[:20]!r}; supported: {sorted(SUPPORTED_VERSIONS)}")
    row: dict[str, Any] = {"schema_version": version}
    for spec in COMMON_FIELDS:
        row[spec.name] = _check_field(obj, spec, "", True)
    event_type = row["event_type"]
    if event_type not in TYPE_FIELDS:
        raise Invalid(REASON_EVENT_TYPE, f"{event_type[:40]!r}; known: {', '.join(EVENT_TYPES)}")
    device = obj.get("device")
    if device is None:
        raise Invalid(REASON_MISSING, "device")
    if not isinstance(device, dict):
        raise Invalid(REASON_TYPE, f"device must be object, got {type(device).__name__}")
    for spec in DEVICE_FIELDS:
        row["device_" + spec.name] = _check_field(device, spec, "device.", True)
    required, optional = TYPE_FIELDS[event_type]
    for spec in required:
        row[spec.name] = _check_field(obj, spec, "", True)
    for spec in optional:
        row[spec.name] = _check_field(obj, spec, "", False)
    event_time = row["event_time"]
    if event_time > reference_time_ms + limits.max_clock_skew_ms:
        raise Invalid(
            REASON_TIMESTAMP, f"event_time {event_time} is in the future of the broker time {reference_time_ms}"
        )
    if event_time < reference_time_ms - limits.max_event_age_ms:
        raise Invalid(REASON_TIMESTAMP, f"event_time {event_time} is older than the accepted age")
    return row


def validate_payload(
    payload: bytes | None, reference_time_ms: int, limits: ValidationLimits = ValidationLimits()
) -> dict[str, Any]:
    """Decode and validate one raw Kafka value; raises :class:`Invalid` with the reason.

    This is the reference validator. Bulk paths use :func:`validate_row`, which takes a compiled
    fast path and falls back here for anything it rejects.
    """
    if not payload:
        raise Invalid(REASON_EMPTY, "message has no value")
    if len(payload) > limits.max_payload_bytes:
        raise Invalid(REASON_OVERSIZED, f"{len(payload)} bytes > {limits.max_payload_bytes}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise Invalid(REASON_BAD_JSON, str(e)[:200]) from None
    return validate_object(obj, reference_time_ms, limits)


# ---------------------------------------------------------------------------------------------
# Fast path: one flat msgspec struct generated from the same FieldSpecs, decoding and checking
# in C. It accepts a subset of what validate_object accepts (per-type requirements and the event
# time are checked after decoding); whatever it rejects goes to validate_object for the verdict.


def _decoder_type(spec: FieldSpec, optional: bool) -> Any:
    """The msgspec type of a field: types, choices and bounds. Patterns are checked on whole
    columns afterwards (:func:`pattern_failures`), which is much faster than per value."""
    kind: Any = Literal[tuple(sorted(spec.choices))] if spec.choices is not None else spec.kind
    meta = {key: getattr(spec, key) for key in ("ge", "gt", "le", "max_length") if getattr(spec, key) is not None}
    if meta:
        kind = Annotated[kind, msgspec.Meta(**meta)]
    return Optional[kind] if optional else kind  # noqa: UP045 - a runtime type expression


def _per_type_specs() -> dict[str, FieldSpec]:
    specs: dict[str, FieldSpec] = {}
    for required, optional in TYPE_FIELDS.values():
        for spec in (*required, *optional):
            if specs.setdefault(spec.name, spec) != spec:
                raise TypeError(f"field {spec.name} is declared differently by two event types")
    return specs


_PER_TYPE = _per_type_specs()
# Field order of a fast-path row: astuple() of the flat struct below, device nested.
_FAST_FIELDS = ("schema_version", *(f.name for f in COMMON_FIELDS), "device", *_PER_TYPE)
FAST_COLUMNS = (
    "schema_version",
    *(f.name for f in COMMON_FIELDS),
    *("device_" + f.name for f in DEVICE_FIELDS),
    *_PER_TYPE,
)
REQUIRED_BY_TYPE = {t: tuple(f.name for f in req) for t, (req, _) in TYPE_FIELDS.items() if req}
FIELDS_BY_TYPE = {t: frozenset(f.name for f in (*req, *opt)) for t, (req, opt) in TYPE_FIELDS.items()}
# Column name -> regex, for the vectorised pattern check.
PATTERNS = {
    **{f.name: f.pattern for f in COMMON_FIELDS if f.pattern},
    **{"device_" + f.name: f.pattern for f in DEVICE_FIELDS if f.pattern},
    **{name: f.pattern for name, f in _PER_TYPE.items() if f.pattern},
}


def _build_decoder() -> msgspec.json.Decoder:
    device = msgspec.defstruct("Device", [(f.name, _decoder_type(f, False)) for f in DEVICE_FIELDS])
    fields: list[Any] = [("schema_version", Literal[tuple(sorted(SUPPORTED_VERSIONS))])]
    for f in COMMON_FIELDS:
        kind = Literal[tuple(EVENT_TYPES)] if f.name == "event_type" else _decoder_type(f, False)
        fields.append((f.name, kind))
    fields.append(("device", device))
    fields += [(name, _decoder_type(f, True), None) for name, f in _PER_TYPE.items()]
    return msgspec.json.Decoder(msgspec.defstruct("Event", fields))


_DECODER = _build_decoder()
_astuple = msgspec.structs.astuple


def decode_fast(payload: bytes, low_ms: int, high_ms: int) -> tuple | None:
    """The event as a tuple in ``_FAST_FIELDS`` order (device still a struct) if types, bounds,
    per-type requirements and event time hold; else None. Patterns are not checked here."""
    try:
        # msgspec skips unknown fields without checking their bytes; the reference validator
        # rejects invalid UTF-8 anywhere, so check it here (cheap, done in C).
        payload.decode("utf-8")
        event = _DECODER.decode(payload)
    except Exception:  # noqa: BLE001
        # Not only ValidationError/DecodeError: invalid UTF-8 in a string raises UnicodeDecodeError
        # and deep nesting RecursionError. One such message must not fail the whole batch; the
        # reference validator gives it its verdict.
        return None
    if not low_ms <= event.event_time <= high_ms:
        return None
    required = REQUIRED_BY_TYPE.get(event.event_type)
    if required is not None:
        for name in required:
            if getattr(event, name) is None:
                return None
    return _astuple(event)


def fast_columns(rows: list[tuple]) -> dict[str, list]:
    """Columns (FAST_COLUMNS) of decode_fast rows; the device struct is flattened."""
    if not rows:
        return {name: [] for name in FAST_COLUMNS}
    columns = dict(zip(_FAST_FIELDS, map(list, zip(*rows, strict=True)), strict=True))
    devices = columns.pop("device")
    for f in DEVICE_FIELDS:
        columns["device_" + f.name] = [getattr(d, f.name) for d in devices]
    return {name: columns[name] for name in FAST_COLUMNS}


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Serialise an event for the wire (compact UTF-8 JSON)."""
    return orjson.dumps(event)


def make_event(
    *,
    event_id: str,
    event_type: str,
    user_id: str,
    video_id: str,
    event_time_ms: int,
    session_id: str,
    request_id: str = "",
    device: Mapping[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """Build a contract event dict; ``extra`` holds the per-type fields."""
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user_id,
        "video_id": video_id,
        "event_time": event_time_ms,
        "session_id": session_id,
        "request_id": request_id,
        "device": dict(device),
    }
    event.update({k: v for k, v in extra.items() if v is not None})
    return event


_UTC_MS = pa.timestamp("ms", tz="UTC")
_UTC_US = pa.timestamp("us", tz="UTC")

# Columns of a validated event as the lake stores it (bronze adds Kafka lineage).
EVENT_COLUMNS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("event_time", _UTC_US, nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("device_os", pa.string(), nullable=False),
        pa.field("device_app_version", pa.string(), nullable=False),
        pa.field("device_country", pa.string(), nullable=False),
        pa.field("device_network", pa.string(), nullable=False),
        pa.field("watch_ms", pa.int64()),
        pa.field("video_duration_ms", pa.int64()),
        pa.field("position", pa.int32()),
        pa.field("variant", pa.string()),
        pa.field("propensity", pa.float64()),
    ]
)
KAFKA_LINEAGE_COLUMNS = pa.schema(
    [
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("kafka_timestamp", _UTC_US, nullable=False),
    ]
)
BRONZE_SCHEMA = pa.schema(
    list(EVENT_COLUMNS) + list(KAFKA_LINEAGE_COLUMNS) + [pa.field("event_date", pa.date32(), nullable=False)]
)
QUARANTINE_SCHEMA = pa.schema(
    list(KAFKA_LINEAGE_COLUMNS)
    + [
        pa.field("raw_value", pa.binary()),
        pa.field("raw_key", pa.binary()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("received_date", pa.date32(), nullable=False),
    ]
)
BRONZE_PARTITION_BY = ("event_date",)
QUARANTINE_PARTITION_BY = ("received_date",)
