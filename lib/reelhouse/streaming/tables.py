"""The tables the ingestion job (ingest.py) writes: bronze and quarantine.

Their schemas are the event contract's (events/contract.py says what a valid event and a
quarantined message hold); the specs live here, next to their writer, and not in lake/, which
stays generic: the lake knows Delta tables, not events. Silver reads bronze through
:data:`BRONZE_EVENTS`.
"""

from reelhouse.events.contract import (
    BRONZE_PARTITION_BY,
    BRONZE_SCHEMA,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_SCHEMA,
)
from reelhouse.lake import TableSpec

BRONZE_EVENTS = TableSpec(
    "bronze_events",
    BRONZE_SCHEMA,
    BRONZE_PARTITION_BY,
    "Every valid activity-log event exactly once, as received, with its Kafka position.",
)
QUARANTINE_EVENTS = TableSpec(
    "quarantine_events",
    QUARANTINE_SCHEMA,
    QUARANTINE_PARTITION_BY,
    "Every message that broke the event contract: raw payload, reason, Kafka position.",
)
