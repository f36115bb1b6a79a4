"""Gold (batch layer): the registry's features as of the end of a data interval, into Delta.

One table per entity (``video_features``, ``user_features``, ``user_topic_features``), one
row per entity and ``feature_time``; each run replaces the partition of its ``feature_time``,
so re-running an interval leaves the same rows. Training joins these point-in-time: an
impression at ``t`` may only use rows with ``feature_time <= t``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
from pyspark.sql import functions as F

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.features.batch import feature_event_time, window_features, with_shares
from reelhouse.features.registry import AGES, DECAYED, ENTITY_KEYS, MEASURES, SHARES, WINDOWS, features_for
from reelhouse.lake import Lake, TableSpec
from reelhouse.lake.partitions import hour_partition
from reelhouse.progress import stage
from reelhouse.silver.tables import SILVER_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def feature_table(entity: str) -> TableSpec:
    """The Delta table of one entity's features, its schema derived from the registry."""
    fields = [pa.field(key, pa.string(), nullable=False) for key in ENTITY_KEYS[entity]]
    for spec in features_for(entity):
        is_count = spec.denominator is None and MEASURES[spec.numerator].value == "1"
        fields.append(pa.field(spec.name, pa.int64() if is_count else pa.float64()))
    fields += [pa.field(d.name, pa.float64()) for d in DECAYED if d.entity == entity]
    fields += [pa.field(a.name, pa.int64()) for a in AGES if a.entity == entity]
    fields += [pa.field(s.name, pa.float64()) for s in SHARES if s.entity == entity]
    fields += [
        pa.field("feature_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("feature_hour", pa.string(), nullable=False),
    ]
    return TableSpec(f"{entity}_features", pa.schema(fields), ("feature_hour",), f"{entity} features by feature_time")


def realtime_feature_table(entity: str) -> TableSpec:
    """The speed layer's rows: the gold columns plus when and in which micro-batch they were computed.

    A key has one row per micro-batch that changed it; the latest ``computed_at`` of a
    ``feature_time`` is the speed layer's final value for it.
    """
    gold = feature_table(entity)
    schema = gold.schema.append(pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False)).append(
        pa.field("batch_id", pa.int64(), nullable=False)
    )
    return TableSpec(f"{entity}_features_rt", schema, ("feature_hour",), f"{entity} features from the speed layer")


@dataclass
class GoldResult:
    feature_time: str
    silver_version: int
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def build_features(spark: SparkSession, config: ReelhouseConfig, as_of: dt.datetime) -> GoldResult:
    """Every entity's features as of ``as_of`` (an interval end, on a whole UTC hour)."""
    if as_of.tzinfo is None or as_of.minute or as_of.second or as_of.microsecond:
        raise ReelhouseError(f"feature time {as_of} must be a timezone-aware whole hour (the end of a data interval)")
    lake = Lake(config.lake)
    silver_version = lake.version(SILVER_EVENTS.name, spark)
    longest = dt.timedelta(seconds=max(WINDOWS.values()))
    # Events are read by their own time (silver's partitions), widened by the clock skew the
    # contract accepts, then placed at their feature time (never after they were received).
    skew = dt.timedelta(seconds=config.ingest.max_clock_skew_s)
    events = (
        lake.read(spark, SILVER_EVENTS.name, version=silver_version)
        .where(
            (F.col("event_time") >= F.lit(as_of - longest).cast("timestamp"))
            & (F.col("event_time") < F.lit(as_of + skew).cast("timestamp"))
        )
        .withColumn("event_time", feature_event_time())
        .cache()
    )
    hour = hour_partition(as_of)
    result = GoldResult(feature_time=as_of.isoformat(), silver_version=silver_version)
    try:
        frames = {}
        for entity in ENTITY_KEYS:
            source = events.where(F.col("topic").isNotNull()) if "topic" in ENTITY_KEYS[entity] else events
            frames[entity] = window_features(source, entity, as_of)
        for entity, frame in frames.items():
            table = feature_table(entity)
            frame = with_shares(frame, entity, frames).withColumn("feature_hour", F.lit(hour))
            with stage(log, f"gold: {table.name} as of {hour}") as done:
                commit = lake.replace_partitions(frame, table, "feature_hour", [hour])
                done(rows=commit.rows)
            result.rows[table.name] = commit.rows
    finally:
        events.unpersist()
    log.info("gold features as of %s from silver v%d: %s", as_of, silver_version, result.rows)
    return result
