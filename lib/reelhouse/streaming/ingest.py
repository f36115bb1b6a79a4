"""Ingestion: Kafka activity logs -> ``bronze_events`` and ``quarantine_events``, exactly once.

Each micro-batch is a fixed set of Kafka offset ranges (checkpointed by Spark before it runs).
Executors validate the records against the contract and write parquet files for both tables
in one pass; the driver commits each table with the Delta app transaction
``(<query name>:<query id>, <batch id>)``. A micro-batch replayed after a crash finds its
transaction already in the table and commits nothing, so no row is written twice; a batch that
never committed is replayed from the same offsets, so no row is lost.

The query id comes from the checkpoint: a new checkpoint is a new query with its own
transaction ids, so restarting from scratch cannot be mistaken for a replay.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from reelhouse.config import IngestConfig, ReelhouseConfig, SpeedConfig
from reelhouse.events.contract import ValidationLimits
from reelhouse.events.records import split_records
from reelhouse.lake import AppTransaction, FileAction, Lake
from reelhouse.lake.files import filesystem_for
from reelhouse.lake.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from reelhouse.streaming.kafka_source import read_kafka_stream
from reelhouse.streaming.queries import await_query, with_trigger

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


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


def kafka_options(config: ReelhouseConfig, stream: IngestConfig | SpeedConfig | None = None) -> dict[str, str]:
    """Source options for the events topic, from config (client settings pass through as kafka.*).

    ``stream`` is the section of the query reading it (default: ingestion).
    """
    stream = stream or config.ingest
    options = {
        "kafka.bootstrap.servers": config.kafka.bootstrap_servers,
        "subscribe": config.kafka.events_topic.name,
        "startingOffsets": stream.starting_offsets,
        "minPartitions": str(stream.min_partitions),
    }
    if stream.max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(stream.max_offsets_per_trigger)
    if getattr(stream, "tail_probe_ms", None) is not None:
        options["tailProbeMs"] = str(stream.tail_probe_ms)
    options.update({f"kafka.{k}": v for k, v in config.kafka.client.items()})
    return options


def validation_limits(config: ReelhouseConfig) -> ValidationLimits:
    return ValidationLimits(
        max_payload_bytes=config.ingest.max_payload_bytes,
        max_clock_skew_ms=config.ingest.max_clock_skew_s * 1000,
        max_event_age_ms=config.ingest.max_event_age_days * 86_400_000,
    )


def checkpoint_query_id(checkpoint_dir: str) -> str:
    """The stream id Spark keeps in ``<checkpoint>/metadata`` (stable across restarts)."""
    fs, path = filesystem_for(checkpoint_dir.rstrip("/") + "/metadata")
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode().splitlines()[0])["id"]


class IngestionJob:
    """One micro-batch handler plus the streaming query around it."""

    def __init__(self, spark: SparkSession, config: ReelhouseConfig) -> None:
        self.spark = spark
        self.config = config
        self.lake = Lake(config.lake, native=config.spark.delta_format == "native")
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
        txn = AppTransaction(self.app_id, batch_id)
        tables = (BRONZE_EVENTS, QUARANTINE_EVENTS)
        done = [self.lake.committed_version(spec.name, txn.app_id) for spec in tables]
        if all(v is not None and v >= batch_id for v in done):
            log.info("batch %d already in the lake; skipping replay", batch_id)
            self.result.skipped_batches += 1
            return
        started = time.monotonic()
        actions = self.lake.write_files(records, _BatchWriter(self.lake, self.limits))
        by_table: dict[str, list[FileAction]] = {spec.name: [] for spec in tables}
        for action in actions:
            by_table[action.table].append(action)
        # Quarantine first: a crash between the two commits then replays into bronze, the table
        # whose completeness matters most, rather than leaving bronze ahead.
        commits = {}
        for spec in (QUARANTINE_EVENTS, BRONZE_EVENTS):
            commits[spec.name] = self.lake.commit(
                spec, by_table[spec.name], txn=txn, metadata={"reelhouse.batch_id": str(batch_id)}
            )
        bronze, quarantine = commits[BRONZE_EVENTS.name], commits[QUARANTINE_EVENTS.name]
        self.result.batches += 1
        self.result.bronze_rows += bronze.rows
        self.result.quarantine_rows += quarantine.rows
        self.result.records += bronze.rows + quarantine.rows
        self.result.bronze_version = bronze.version if bronze.version is not None else self.result.bronze_version
        self.result.quarantine_version = (
            quarantine.version if quarantine.version is not None else self.result.quarantine_version
        )
        log.info(
            "batch %d: %d bronze rows, %d quarantined, in %.1fs",
            batch_id, bronze.rows, quarantine.rows, time.monotonic() - started,
        )

    def start(self, trigger: str | None = None) -> Any:
        ingest = self.config.ingest
        records = read_kafka_stream(
            self.spark, kafka_options(self.config), native=self.config.spark.kafka_format == "native"
        )
        for spec in (BRONZE_EVENTS, QUARANTINE_EVENTS):
            self.lake.ensure_table(spec)
        writer = (
            records.writeStream.queryName(ingest.query_name)
            .option("checkpointLocation", ingest.checkpoint_dir)
            .foreachBatch(self.process_batch)
        )
        return with_trigger(writer, trigger or ingest.trigger, ingest.processing_time).start()


class _BatchWriter:
    """Executor side of one micro-batch: validate records, write both tables' files."""

    def __init__(self, lake: Lake, limits: ValidationLimits) -> None:
        self.bronze = lake.file_writer(BRONZE_EVENTS)
        self.quarantine = lake.file_writer(QUARANTINE_EVENTS)
        self.limits = limits

    def __call__(self, records: pa.Table) -> list[FileAction]:
        bronze, quarantine = split_records(records, self.limits)
        return self.bronze.write(bronze) + self.quarantine.write(quarantine)


def run_ingestion(spark: SparkSession, config: ReelhouseConfig, trigger: str | None = None) -> IngestionResult:
    """Run the ingestion stream; returns when an available-now run has drained the topic."""
    job = IngestionJob(spark, config)
    query = job.start(trigger)
    log.info("ingestion query %s started (trigger=%s)", config.ingest.query_name, trigger or config.ingest.trigger)
    job.result.elapsed_s = await_query(query, "ingestion")
    if job.result.quarantine_rows:
        job.result.reasons = quarantine_reasons(job.lake)
    return job.result


def quarantine_reasons(lake: Lake) -> dict[str, int]:
    counts = lake.to_arrow(QUARANTINE_EVENTS.name, columns=["reason"]).column("reason").value_counts()
    return {item["values"].as_py(): item["counts"].as_py() for item in counts}
