"""Ingestion: Kafka activity logs -> ``bronze_events`` and ``quarantine_events``, exactly once.

Spark's ``kafka`` source plans each micro-batch as fixed per-partition offset ranges and
checkpoints them before reading. Executors validate the records against the event contract in
one pass (:func:`reelhouse.events.records.split_records`); the rows of both tables come out of
that pass together and are written with delta-spark under Delta's idempotent-writes protocol:
``txnAppId = <query name>:<query id>``, ``txnVersion = <batch id>``. A micro-batch replayed after a
crash finds its transaction already in the table and writes nothing, so no row is written twice;
a batch that never committed is replayed from the same offsets, so no row is lost.

The query id comes from the checkpoint: a new checkpoint is a new query with its own
transaction ids, so restarting from scratch cannot be mistaken for a replay.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import BRONZE_SCHEMA, QUARANTINE_SCHEMA, ValidationLimits
from reelhouse.events.records import split_records
from reelhouse.lake import AppTransaction, Lake
from reelhouse.streaming.queries import await_query, checkpoint_owner, with_trigger
from reelhouse.streaming.source import checkpoint_query_id, read_events_stream
from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# One row per record out of the validation pass: bronze's columns, then quarantine's own; a
# record is quarantined exactly when its `reason` is set.
_QUARANTINE_ONLY = [f for f in QUARANTINE_SCHEMA if f.name not in BRONZE_SCHEMA.names]
VALIDATED_SCHEMA = pa.schema([f.with_nullable(True) for f in (*BRONZE_SCHEMA, *_QUARANTINE_ONLY)])


@dataclass
class IngestionResult:
    query_id: str
    batches: int = 0
    skipped_batches: int = 0
    records: int = 0
    bronze_rows: int = 0
    quarantine_rows: int = 0
    bronze_version: int | None = None
    quarantine_version: int | None = None
    elapsed_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def validation_limits(config: ReelhouseConfig) -> ValidationLimits:
    return ValidationLimits(
        max_payload_bytes=config.ingest.max_payload_bytes,
        max_clock_skew_ms=config.ingest.max_clock_skew_s * 1000,
        max_event_age_ms=config.ingest.max_event_age_days * 86_400_000,
    )


class ValidateRecords:
    """Executor side of one micro-batch: Kafka records -> validated rows of both tables."""

    def __init__(self, limits: ValidationLimits) -> None:
        self.limits = limits

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            bronze, quarantine = split_records(pa.Table.from_batches([batch]), self.limits)
            yield from _as_validated(bronze).to_batches()
            if quarantine.num_rows:
                yield from _as_validated(quarantine).to_batches()


def _as_validated(rows: pa.Table) -> pa.Table:
    columns = [
        rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in VALIDATED_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=VALIDATED_SCHEMA)


def validate(records: DataFrame, limits: ValidationLimits) -> DataFrame:
    """Kafka records -> one validated row per record (see :data:`VALIDATED_SCHEMA`)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return records.mapInArrow(ValidateRecords(limits), from_arrow_schema(VALIDATED_SCHEMA))


class IngestionJob:
    """One micro-batch handler plus the streaming query around it."""

    def __init__(self, spark: SparkSession, config: ReelhouseConfig) -> None:
        self.spark = spark
        self.config = config
        self.lake = Lake(config.lake)
        self.limits = validation_limits(config)
        self.result = IngestionResult(query_id="")
        self._app_id: str | None = None

    @property
    def app_id(self) -> str:
        if self._app_id is None:
            query_id = checkpoint_query_id(self.config.ingest.checkpoint_dir)
            self.result.query_id = query_id
            self._app_id = f"{self.config.ingest.query_name}:{query_id}"
        return self._app_id

    def process_batch(self, records: DataFrame, batch_id: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        txn = AppTransaction(self.app_id, batch_id)
        started = time.monotonic()
        # Both tables' rows come from one validation pass, kept until both writes are done.
        validated = validate(records, self.limits).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            quarantine = validated.where(F.col("reason").isNotNull()).select(*QUARANTINE_SCHEMA.names)
            bronze = validated.where(F.col("reason").isNull()).select(*BRONZE_SCHEMA.names)
            metadata = {"reelhouse.batch_id": str(batch_id)}
            # Quarantine first: a crash between the two writes then replays into bronze, the
            # table whose completeness matters most, rather than leaving bronze ahead.
            q = self.lake.append(quarantine, QUARANTINE_EVENTS, txn=txn, metadata=metadata)
            b = self.lake.append(bronze, BRONZE_EVENTS, txn=txn, metadata=metadata)
        finally:
            validated.unpersist()
        if b.skipped and q.skipped:
            log.info("batch %d already in the lake; skipped the replay", batch_id)
            self.result.skipped_batches += 1
            return
        self.result.batches += 1
        self.result.bronze_rows += b.rows
        self.result.quarantine_rows += q.rows
        self.result.records += b.rows + q.rows
        self.result.bronze_version = b.version if not b.skipped else self.result.bronze_version
        self.result.quarantine_version = q.version if not q.skipped else self.result.quarantine_version
        log.info(
            "batch %d: %d bronze rows, %d quarantined, in %.1fs",
            batch_id,
            b.rows,
            q.rows,
            time.monotonic() - started,
        )

    def start(self, trigger: str | None = None) -> Any:
        ingest = self.config.ingest
        records = read_events_stream(self.spark, self.config, ingest)
        for spec in (BRONZE_EVENTS, QUARANTINE_EVENTS):
            self.lake.ensure_table(self.spark, spec)
        writer = (
            records.writeStream.queryName(ingest.query_name)
            .option("checkpointLocation", ingest.checkpoint_dir)
            .foreachBatch(self.process_batch)
        )
        return with_trigger(writer, trigger or ingest.trigger, ingest.processing_time).start()


def run_ingestion(spark: SparkSession, config: ReelhouseConfig, trigger: str | None = None) -> IngestionResult:
    """Run the ingestion stream; returns when an available-now run has drained the topic."""
    with checkpoint_owner(config.ingest):
        job = IngestionJob(spark, config)
        query = job.start(trigger)
        log.info("ingestion query %s started (trigger=%s)", config.ingest.query_name, trigger or config.ingest.trigger)
        job.result.elapsed_s = await_query(query, "the ingestion stream", config.ingest)
    if job.result.quarantine_rows:
        job.result.reasons = quarantine_reasons(spark, job.lake)
    return job.result


def quarantine_reasons(spark: SparkSession, lake: Lake) -> dict[str, int]:
    rows = lake.read(spark, QUARANTINE_EVENTS.name).groupBy("reason").count().collect()
    return {row["reason"]: row["count"] for row in rows}
