"""Deliberately broken messages, so ingestion's quarantine path is exercised with known inputs.

Each kind turns one valid encoded event into a message the contract rejects, always for the
same reason (see :data:`EXPECTED_REASON`):

- ``bad_json``: the JSON text is cut in half, as a crashed client might send it.
- ``missing_field``: a required field (user_id, event_time, device ...) is removed.
- ``wrong_type``: a field has the wrong JSON type (event_time as a string, device as a string ...).
- ``absurd_timestamp``: event_time in seconds or microseconds instead of milliseconds.
- ``oversized_payload``: a debug blob pushes the message past the ingestion size limit.
"""

from __future__ import annotations

import numpy as np
import orjson

from reelhouse.events import contract

MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "absurd_timestamp", "oversized_payload")
EXPECTED_REASON = {
    "bad_json": contract.REASON_BAD_JSON,
    "missing_field": contract.REASON_MISSING,
    "wrong_type": contract.REASON_TYPE,
    "absurd_timestamp": contract.REASON_TIMESTAMP,
    "oversized_payload": contract.REASON_OVERSIZED,
}
_REMOVABLE = ("user_id", "video_id", "event_time", "event_type", "event_id", "session_id", "device", "schema_version")


def _bad_json(value: bytes, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    return value[: max(1, len(value) // 2)]


def _missing_field(value: bytes, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    event = orjson.loads(value)
    del event[_REMOVABLE[rng.integers(len(_REMOVABLE))]]
    return orjson.dumps(event)


def _wrong_type(value: bytes, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    event = orjson.loads(value)
    choice = rng.integers(3)
    if choice == 0:
        event["event_time"] = str(event["event_time"])
    elif choice == 1:
        event["user_id"] = int(event["user_id"].lstrip("u") or 0)
    else:
        event["device"] = event["device"]["os"]
    return orjson.dumps(event)


def _absurd_timestamp(value: bytes, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    event = orjson.loads(value)
    # The usual unit mix-ups: seconds land in 1970, microseconds in the year 58000.
    event["event_time"] = event["event_time"] // 1000 if rng.random() < 0.5 else event["event_time"] * 1000
    return orjson.dumps(event)


def _oversized_payload(value: bytes, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    event = orjson.loads(value)
    event["debug_blob"] = "x" * max(0, oversized_bytes - len(value))
    return orjson.dumps(event)


_CORRUPT = (_bad_json, _missing_field, _wrong_type, _absurd_timestamp, _oversized_payload)


def corrupt(value: bytes, kind: int, rng: np.random.Generator, oversized_bytes: int) -> bytes:
    """Break a valid encoded event the way ``MALFORMED_KINDS[kind]`` says."""
    return _CORRUPT[kind](value, rng, oversized_bytes)
