"""The tables of the lake, by layer. Each spec is the one definition its writers and readers use."""

from reelhouse.events.contract import (
    BRONZE_PARTITION_BY,
    BRONZE_SCHEMA,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_SCHEMA,
)
from reelhouse.lake.delta import TableSpec

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
