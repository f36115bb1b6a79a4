"""Turn raw Kafka records into bronze rows and quarantine rows (pure Arrow -> Arrow).

Input columns are those of the Kafka source (key, value, topic, partition, offset, timestamp).
Every record lands in exactly one of the two outputs: valid events in bronze, anything else in
quarantine with its reason; nothing is dropped.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.events.contract import (
    BRONZE_SCHEMA,
    EVENT_COLUMNS,
    FAST_COLUMNS,
    FIELDS_BY_TYPE,
    PATTERNS,
    QUARANTINE_SCHEMA,
    Invalid,
    ValidationLimits,
    decode_fast,
    fast_columns,
    validate_payload,
)

#: What :func:`split_records` reads: the columns of Spark's ``kafka`` source, as Arrow hands them over.
KAFKA_RECORD_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def split_records(records: pa.Table, limits: ValidationLimits) -> tuple[pa.Table, pa.Table]:
    """Validate each record's value; return ``(bronze, quarantine)`` tables in their lake schemas.

    Most records take the compiled fast path (types and bounds per record, id patterns per
    column); every record it does not accept gets the reference validator's verdict.
    """
    values = records.column("value").to_pylist()
    stamps_ms = pc.divide(records.column("timestamp").cast(pa.int64()), 1000).to_pylist()
    fast_index: list[int] = []
    fast_rows: list[tuple] = []
    slow_index: list[int] = []
    for i, payload in enumerate(values):
        row = None
        if payload and len(payload) <= limits.max_payload_bytes:
            ref = stamps_ms[i]
            row = decode_fast(payload, ref - limits.max_event_age_ms, ref + limits.max_clock_skew_ms)
        if row is None:
            slow_index.append(i)
        else:
            fast_index.append(i)
            fast_rows.append(row)
    fast = _event_arrays(fast_columns(fast_rows))
    matches = _patterns_hold(fast)
    if not pc.all(matches).as_py() and len(fast_index):
        slow_index.extend(pc.filter(pa.array(fast_index, pa.int64()), pc.invert(matches)).to_pylist())
        fast = {name: pc.filter(column, matches) for name, column in fast.items()}
        fast_index = pc.filter(pa.array(fast_index, pa.int64()), matches).to_pylist()

    good_index, slow_rows, bad_index, reasons, details = [], [], [], [], []
    for i in sorted(slow_index):
        try:
            verdict = validate_payload(values[i], stamps_ms[i], limits)
        except Invalid as e:
            bad_index.append(i)
            reasons.append(e.reason)
            details.append(e.detail)
            continue
        good_index.append(i)
        slow_rows.append(tuple(verdict.get(name) for name in FAST_COLUMNS))
    events = pa.concat_tables(
        [
            pa.table(fast),
            pa.table(
                _event_arrays(
                    dict(zip(FAST_COLUMNS, map(list, zip(*slow_rows))))
                    if slow_rows
                    else {name: [] for name in FAST_COLUMNS}
                )
            ),
        ]
    )
    bronze = _bronze(records.take(pa.array(fast_index + good_index, pa.int64())), events)
    quarantine = _quarantine(records.take(pa.array(bad_index, pa.int64())), reasons, details)
    return bronze, quarantine


_TYPES = {f.name: f.type for f in EVENT_COLUMNS}


def _event_arrays(columns: dict[str, list]) -> dict[str, pa.Array]:
    arrays = {
        name: pa.array(columns[name], _TYPES[name] if name != "event_time" else pa.int64()) for name in FAST_COLUMNS
    }
    arrays["event_time"] = pc.multiply(arrays["event_time"], 1000).cast(_TYPES["event_time"])
    # A per-type field sent with an event type that does not carry it is ignored, not stored.
    for name in FAST_COLUMNS:
        owners = [t for t, names in FIELDS_BY_TYPE.items() if name in names]
        if owners:
            keep = pc.is_in(arrays["event_type"], pa.array(owners))
            arrays[name] = pc.if_else(keep, arrays[name], pa.scalar(None, _TYPES[name]))
    return arrays


def _patterns_hold(arrays: dict[str, pa.Array]) -> pa.Array:
    """Per row: every id-like column matches its contract pattern (absent optional values pass)."""
    ok = pa.array([True] * len(arrays["event_id"]), pa.bool_())
    for name, pattern in PATTERNS.items():
        ok = pc.and_(ok, pc.fill_null(pc.match_substring_regex(arrays[name], pattern), True))
    return ok


def _lineage(records: pa.Table) -> dict[str, pa.Array]:
    return {
        "kafka_topic": records.column("topic"),
        "kafka_partition": records.column("partition").cast(pa.int32()),
        "kafka_offset": records.column("offset").cast(pa.int64()),
        "kafka_timestamp": records.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
    }


def _bronze(records: pa.Table, events: pa.Table) -> pa.Table:
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {name: events.column(name) for name in FAST_COLUMNS}
    arrays.update(_lineage(records))
    arrays["event_date"] = pc.cast(arrays["event_time"], pa.date32())
    return pa.table([arrays[f.name] for f in BRONZE_SCHEMA], schema=BRONZE_SCHEMA)


def _quarantine(records: pa.Table, reasons: list[str], details: list[str]) -> pa.Table:
    arrays: dict[str, pa.Array | pa.ChunkedArray] = dict(_lineage(records))
    arrays["raw_value"] = records.column("value")
    arrays["raw_key"] = records.column("key")
    arrays["reason"] = pa.array(reasons, pa.string())
    arrays["detail"] = pa.array(details, pa.string())
    # The broker's receive date, not the (possibly absurd) event time: deterministic on replay.
    arrays["received_date"] = pc.cast(arrays["kafka_timestamp"], pa.date32())
    return pa.table([arrays[f.name] for f in QUARANTINE_SCHEMA], schema=QUARANTINE_SCHEMA)
