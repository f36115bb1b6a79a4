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
    QUARANTINE_SCHEMA,
    Invalid,
    ValidationLimits,
    validate_payload,
)

_EVENT_NAMES = [f.name for f in EVENT_COLUMNS]


def split_records(records: pa.Table, limits: ValidationLimits) -> tuple[pa.Table, pa.Table]:
    """Validate each record's value; return ``(bronze, quarantine)`` tables in their lake schemas."""
    values = records.column("value").to_pylist()
    stamps_us = records.column("timestamp").cast(pa.int64()).to_pylist()
    good_rows: list[int] = []
    columns: dict[str, list] = {name: [] for name in _EVENT_NAMES}
    bad_rows: list[int] = []
    reasons: list[str] = []
    details: list[str] = []
    for i, payload in enumerate(values):
        try:
            row = validate_payload(payload, stamps_us[i] // 1000, limits)
        except Invalid as e:
            bad_rows.append(i)
            reasons.append(e.reason)
            details.append(e.detail)
            continue
        good_rows.append(i)
        for name in _EVENT_NAMES:
            columns[name].append(row.get(name))
    columns["event_time"] = [ms * 1000 for ms in columns["event_time"]]
    bronze = _bronze(records.take(pa.array(good_rows, pa.int64())), columns)
    quarantine = _quarantine(records.take(pa.array(bad_rows, pa.int64())), reasons, details)
    return bronze, quarantine


def _lineage(records: pa.Table) -> dict[str, pa.Array]:
    return {
        "kafka_topic": records.column("topic"),
        "kafka_partition": records.column("partition").cast(pa.int32()),
        "kafka_offset": records.column("offset").cast(pa.int64()),
        "kafka_timestamp": records.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
    }


def _bronze(records: pa.Table, columns: dict[str, list]) -> pa.Table:
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {
        field.name: pa.array(columns[field.name], field.type) for field in EVENT_COLUMNS
    }
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
