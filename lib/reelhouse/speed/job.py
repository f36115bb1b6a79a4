"""The speed-layer stream: Kafka -> hourly feature tiles -> online store and real-time Delta.

Per micro-batch:

1. executors validate the records against the contract (invalid ones are the ingestion job's to
   quarantine; here they are skipped), place each event at its feature time
   ``LEAST(event_time, Kafka timestamp)`` and attach the video's topic and upload time;
2. Spark drops duplicates of an ``event_id`` seen within the watermark and events older than
   the watermark (``speed.watermark_s`` behind the latest event time), then sums every measure
   into one tile per entity and UTC hour. Open tiles are Spark state, checkpointed with the
   query's offsets; the output is the tiles this batch changed, with their new absolute sums;
3. the driver merges the changed tiles into the entities' tile rows in the online store,
   recomputes their features as of the end of their latest tile (the same function of tiles
   the tests hold equal to the batch layer) and writes them to the online feature views;
4. the same feature rows are spooled durably and appended to ``<entity>_features_rt`` in Delta
   off the batch's path (:mod:`reelhouse.speed.realtime`), committed with the app transaction
   ``(<query name>:<query id>, highest batch id)``, so a replayed batch adds nothing.

The values therefore equal the batch layer's for the same events: exactly for events inside
the watermark, and the batch layer alone counts the later ones (see docs/features.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import ValidationLimits
from reelhouse.events.records import split_records
from reelhouse.features.gold import realtime_feature_table
from reelhouse.features.registry import ENTITIES, KEY_SEPARATOR, MEASURES, TILE_S
from reelhouse.lake import Lake
from reelhouse.lake.partitions import hour_partition
from reelhouse.online.store import open_online_store
from reelhouse.speed.dimensions import shared_video_attributes
from reelhouse.speed.online import OnlineTiles
from reelhouse.speed.realtime import RealtimeDeltaWriter
from reelhouse.streaming.ingest import validation_limits
from reelhouse.streaming.queries import await_query, checkpoint_owner, with_trigger
from reelhouse.streaming.source import checkpoint_query_id, read_events_stream

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

MEASURE_NAMES = tuple(sorted(MEASURES))
_STATE_STORES = {
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}
_EVENT_DDL = (
    "event_id string, event_type string, user_id string, video_id string, watch_ms long, "
    "video_duration_ms long, event_time timestamp, topic string, upload_time timestamp"
)


class FeatureEvents:
    """Executor side: raw Kafka records -> valid events at their feature time, with video attributes."""

    def __init__(self, config: ReelhouseConfig) -> None:
        self.limits: ValidationLimits = validation_limits(config)
        self.lake_config = config.lake
        self.refresh_s = config.speed.dimensions_refresh_s

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        videos = shared_video_attributes(self.lake_config, self.refresh_s)
        for batch in batches:
            if not batch.num_rows:
                continue
            events, _ = split_records(pa.Table.from_batches([batch]), self.limits)
            if not events.num_rows:
                continue
            stamps = [events.column(c).cast(pa.int64()) for c in ("event_time", "kafka_timestamp")]
            at = pc.min_element_wise(*stamps).cast(events.schema.field("event_time").type)
            table = events.select(["event_id", "event_type", "user_id", "video_id", "watch_ms", "video_duration_ms"])
            yield from videos.attach(table.append_column("event_time", at)).to_batches()


def tile_stream(records: DataFrame, config: ReelhouseConfig) -> DataFrame:
    """Changed hourly tiles per entity: ``entity, key, window, <measure sums>, upload_time``."""
    events = records.mapInArrow(FeatureEvents(config), _EVENT_DDL)
    measures = [
        F.when(F.col("event_type").isin(list(m.event_types)), F.expr(m.value))
        .otherwise(F.lit(0))
        .cast("double")
        .alias(name)
        for name, m in sorted(MEASURES.items())
    ]
    unique = events.withWatermark("event_time", f"{config.speed.watermark_s} seconds").dropDuplicatesWithinWatermark(
        ["event_id"]
    )
    user_topic = F.when(F.col("topic").isNotNull(), F.concat_ws(KEY_SEPARATOR, "user_id", "topic"))
    keyed = unique.select(
        "event_time",
        "upload_time",
        *measures,
        F.explode(
            F.array(
                F.struct(F.lit("video").alias("entity"), F.col("video_id").alias("key")),
                F.struct(F.lit("user").alias("entity"), F.col("user_id").alias("key")),
                F.struct(F.lit("user_topic").alias("entity"), user_topic.alias("key")),
            )
        ).alias("e"),
    ).where(F.col("e.key").isNotNull())
    return keyed.groupBy(
        F.col("e.entity").alias("entity"), F.col("e.key").alias("key"), F.window("event_time", f"{TILE_S} seconds")
    ).agg(*[F.sum(name).alias(name) for name in MEASURE_NAMES], F.max("upload_time").alias("upload_time"))


@dataclass
class SpeedResult:
    query_id: str = ""
    batches: int = 0
    tiles: int = 0
    feature_rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class SpeedLayerJob:
    def __init__(self, spark: SparkSession, config: ReelhouseConfig) -> None:
        self.spark = spark
        self.config = config
        self.lake = Lake(config.lake)
        self.store = open_online_store(config.online_store)
        self.tiles = OnlineTiles(self.store)
        self.result = SpeedResult()
        self._app_id: str | None = None
        self.realtime = (
            RealtimeDeltaWriter(spark, self.lake, config.speed.checkpoint_dir, ENTITIES, lambda: self.app_id)
            if config.speed.write_delta
            else None
        )

    @property
    def app_id(self) -> str:
        if self._app_id is None:
            self.result.query_id = checkpoint_query_id(self.config.speed.checkpoint_dir)
            self._app_id = f"{self.config.speed.query_name}:{self.result.query_id}"
        return self._app_id

    def process_batch(self, tiles: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        changed = tiles.select(
            "entity",
            "key",
            F.unix_timestamp("window.start").alias("tile_start"),
            *MEASURE_NAMES,
            F.unix_timestamp("upload_time").alias("upload_time"),
        ).toArrow()
        if not changed.num_rows:
            return
        collected = time.monotonic()
        rows = self.tiles.apply(changed)
        online = time.monotonic()
        if self.realtime is not None:
            self._spool(self.realtime, rows, batch_id)
        self.result.batches += 1
        self.result.tiles += changed.num_rows
        for entity, entity_rows in rows.items():
            self.result.feature_rows[entity] = self.result.feature_rows.get(entity, 0) + len(entity_rows)
        log.info(
            "speed batch %d: %d tiles, %s feature rows; %.2fs to compute tiles, %.2fs online, %.2fs spooled for Delta",
            batch_id,
            changed.num_rows,
            {e: len(r) for e, r in rows.items()},
            collected - started,
            online - collected,
            time.monotonic() - online,
        )

    @staticmethod
    def _spool(realtime: RealtimeDeltaWriter, rows: dict[str, list[dict[str, Any]]], batch_id: int) -> None:
        computed_at = dt.datetime.now(dt.UTC)
        tables = {}
        for entity in ENTITIES:
            entity_rows = rows.get(entity, [])
            for row in entity_rows:
                row["feature_hour"] = hour_partition(row["feature_time"])
                row["computed_at"] = computed_at
                row["batch_id"] = batch_id
            tables[entity] = pa.Table.from_pylist(entity_rows, schema=realtime_feature_table(entity).schema)
        realtime.put(batch_id, tables)

    def start(self, trigger: str | None = None) -> Any:
        speed = self.config.speed
        # Read when the first batch plans its state; a checkpoint keeps its own afterwards.
        self.spark.conf.set("spark.sql.shuffle.partitions", str(speed.state_partitions))
        self.spark.conf.set("spark.sql.streaming.stateStore.providerClass", _STATE_STORES[speed.state_store])
        self.spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        records = read_events_stream(self.spark, self.config, speed)
        if self.realtime is not None:
            self.realtime.start()
        writer = (
            tile_stream(records, self.config)
            .writeStream.queryName(speed.query_name)
            .outputMode("update")
            .option("checkpointLocation", speed.checkpoint_dir)
            .foreachBatch(self.process_batch)
        )
        return with_trigger(writer, trigger or speed.trigger, speed.processing_time).start()

    def close(self) -> None:
        try:
            if self.realtime is not None:
                self.realtime.close()
        finally:
            self.store.close()


def run_speed_layer(spark: SparkSession, config: ReelhouseConfig, trigger: str | None = None) -> SpeedResult:
    """Run the speed layer; returns when an available-now run has drained the topic."""
    with checkpoint_owner(config.speed):
        job = SpeedLayerJob(spark, config)
        try:
            query = job.start(trigger)
            log.info("speed layer %s started (trigger=%s)", config.speed.query_name, trigger or config.speed.trigger)
            job.result.elapsed_s = await_query(query, "the speed layer", config.speed)
        finally:
            job.close()
    return job.result
