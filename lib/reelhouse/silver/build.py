"""The silver job: refresh the dimensions, then rebuild silver for one data interval.

Idempotent per interval: the interval's hourly partitions are replaced atomically, so running
the same interval twice leaves the same rows (see transforms.py for the late-data policy).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.lake import Lake
from reelhouse.lake.partitions import hour_partition
from reelhouse.progress import stage
from reelhouse.silver.tables import DIM_USERS, DIM_VIDEOS, SILVER_EVENTS
from reelhouse.silver.transforms import (
    deduplicate,
    received_in_time,
    sessionise,
    too_late,
    with_dimensions,
    with_partitions,
)
from reelhouse.streaming.tables import BRONZE_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass
class SilverResult:
    start: str
    end: str
    bronze_version: int
    silver_version: int | None
    rows: int
    too_late: int
    duplicates_dropped: int
    dimensions: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def interval_hours(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The hourly partitions of ``[start, end)``; the interval must be whole, non-empty UTC hours."""
    for moment in (start, end):
        if moment.tzinfo is None:
            raise ReelhouseError(f"{moment} has no time zone: pass UTC times such as 2026-11-21T05:00:00+00:00")
        if moment.minute or moment.second or moment.microsecond:
            raise ReelhouseError(f"{moment} is not on a whole hour: silver is rebuilt in hourly partitions")
    if end <= start:
        raise ReelhouseError(f"empty data interval [{start}, {end})")
    hours, moment = [], start.astimezone(dt.UTC)
    while moment < end:
        hours.append(hour_partition(moment))
        moment += dt.timedelta(hours=1)
    return hours


def refresh_dimensions(
    spark: SparkSession, lake: Lake, catalogue_dir: str, now: dt.datetime | None = None
) -> dict[str, dict]:
    """MERGE the catalogue's users and videos into dim_users / dim_videos (upserts, SCD type 1)."""
    stamp = pa.scalar(now or dt.datetime.now(dt.UTC), pa.timestamp("us", tz="UTC"))
    metrics = {}
    for spec, name, key in ((DIM_USERS, "users.parquet", "user_id"), (DIM_VIDEOS, "videos.parquet", "video_id")):
        path = Path(catalogue_dir) / name
        if not path.exists():
            log.warning("no %s at %s: %s left as it is", name, catalogue_dir, spec.name)
            continue
        rows = pq.read_table(path)
        rows = rows.append_column("updated_at", pa.array([stamp.as_py()] * rows.num_rows, stamp.type))
        compare = tuple(n for n in spec.schema.names if n not in (key, "updated_at"))
        # arrow_frame selects and casts to the dimension's schema (the catalogue has more columns).
        result = lake.merge(lake.arrow_frame(spark, rows, spec), spec, (key,), compare)
        metrics[spec.name] = {
            "num_target_rows_inserted": int(result.metrics.get("num_inserted_rows", 0)),
            "num_target_rows_updated": int(result.metrics.get("num_updated_rows", 0)),
        }
    return metrics


def build_silver(spark: SparkSession, config: ReelhouseConfig, start: dt.datetime, end: dt.datetime) -> SilverResult:
    hours = interval_hours(start, end)
    silver_config = config.silver
    lake = Lake(config.lake)
    with stage(log, "silver: refresh dimensions"):
        dimensions = refresh_dimensions(spark, lake, config.simulator.catalogue_dir)
    bronze_version = lake.version(BRONZE_EVENTS.name, spark)
    # As the spec: a bronze table the ingestion has not evolved yet reads a newer event column as null.
    bronze = lake.read_spec(spark, BRONZE_EVENTS, version=bronze_version)
    candidates = received_in_time(bronze, start, end, silver_config.allowed_lateness_s).cache()
    events = deduplicate(candidates)
    context = None
    if lake.exists(SILVER_EVENTS.name, spark):
        silver = lake.read(spark, SILVER_EVENTS.name)
        outside = silver.where(~F.col("event_hour").isin(hours))
        # The same event claimed by another interval (a duplicate sent with another time) stays there.
        window = dt.timedelta(seconds=silver_config.allowed_lateness_s)
        seen = outside.where(
            (F.col("event_time") >= F.lit(start - window).cast("timestamp"))
            & (F.col("event_time") < F.lit(end + window).cast("timestamp"))
        ).select("event_id")
        events = events.join(seen, "event_id", "left_anti")
        gap = dt.timedelta(seconds=silver_config.session_gap_s)
        context = outside.where(
            (F.col("event_time") >= F.lit(start - gap).cast("timestamp"))
            & (F.col("event_time") < F.lit(start).cast("timestamp"))
        )
    sessions = sessionise(events, context, silver_config.session_gap_s)
    users = (
        lake.read(spark, DIM_USERS.name)
        if lake.exists(DIM_USERS.name, spark)
        else spark.createDataFrame([], "user_id string, country string, age_group string")
    )
    videos = (
        lake.read(spark, DIM_VIDEOS.name)
        if lake.exists(DIM_VIDEOS.name, spark)
        else spark.createDataFrame([], "video_id string, creator_id string, topic string, upload_time timestamp")
    )
    enriched = with_partitions(
        with_dimensions(sessions.withColumn("received_at", F.col("kafka_timestamp")), users, videos)
    )
    with stage(log, f"silver: write {len(hours)} hour partition(s)") as done:
        commit = lake.replace_partitions(enriched, SILVER_EVENTS, "event_hour", hours)
        done(rows=commit.rows, version=commit.version)
    late = too_late(bronze, start, end, silver_config.allowed_lateness_s).count()
    received = candidates.count()
    unique = candidates.select("event_id").distinct().count()
    candidates.unpersist()
    result = SilverResult(
        start=start.isoformat(),
        end=end.isoformat(),
        bronze_version=bronze_version,
        silver_version=commit.version,
        rows=commit.rows,
        too_late=late,
        duplicates_dropped=received - unique,
        dimensions=dimensions,
    )
    log.info(
        "silver [%s, %s): %d rows, %d too late, %d duplicates", start, end, result.rows, late, result.duplicates_dropped
    )
    return result
