"""Silver transforms: pure DataFrame -> DataFrame functions (reading and writing live in build.py).

Late-data policy: an event belongs to the interval of its ``event_time`` and is accepted into
silver if the broker received it no later than ``interval end + allowed lateness``. Later
arrivals stay in bronze (counted by the job) but never enter silver, so a run made after the
lateness deadline is final and any re-run gives the same rows; runs made before it are
provisional and converge.

Duplicates: the same ``event_id`` received more than once (client retries, replays) keeps its
earliest-received copy.

Sessions: a user's session ends after ``gap`` without events. A session that began in an
earlier interval keeps its key, taken from the silver rows of the preceding ``gap``; keys are
``<user_id>:<epoch ms of the session's first event>``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F

from reelhouse.lake.partitions import SPARK_HOUR_FORMAT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _ts(moment: dt.datetime):  # noqa: ANN202 - a Spark Column
    return F.lit(moment).cast("timestamp")


def _of_interval(start: dt.datetime, end: dt.datetime):  # noqa: ANN202 - a Spark Column
    return (F.col("event_time") >= _ts(start)) & (F.col("event_time") < _ts(end))


def received_in_time(bronze: DataFrame, start: dt.datetime, end: dt.datetime, lateness_s: int) -> DataFrame:
    """Bronze events of ``[start, end)`` that arrived by ``end + lateness``."""
    deadline = _ts(end + dt.timedelta(seconds=lateness_s))
    return bronze.where(_of_interval(start, end) & (F.col("kafka_timestamp") <= deadline))


def too_late(bronze: DataFrame, start: dt.datetime, end: dt.datetime, lateness_s: int) -> DataFrame:
    """Bronze events of ``[start, end)`` that arrived after ``end + lateness`` (kept out of silver)."""
    deadline = _ts(end + dt.timedelta(seconds=lateness_s))
    return bronze.where(_of_interval(start, end) & (F.col("kafka_timestamp") > deadline))


def deduplicate(events: DataFrame) -> DataFrame:
    """One row per ``event_id``: the earliest received (ties broken by Kafka position)."""
    first = Window.partitionBy("event_id").orderBy("kafka_timestamp", "kafka_partition", "kafka_offset")
    return events.withColumn("__n", F.row_number().over(first)).where(F.col("__n") == 1).drop("__n")


def sessionise(events: DataFrame, context: DataFrame | None, gap_s: int) -> DataFrame:
    """Add ``session_key`` and ``session_start``; ``context`` holds earlier silver rows
    (user_id, event_id, event_time, session_key, session_start) that sessions may continue."""
    current = events.withColumn("__context", F.lit(False)).withColumn("session_key", F.lit(None).cast("string"))
    current = current.withColumn("session_start", F.lit(None).cast("timestamp"))
    if context is not None:
        earlier = context.select("user_id", "event_id", "event_time", "session_key", "session_start")
        current = current.unionByName(earlier.withColumn("__context", F.lit(True)), allowMissingColumns=True)
    by_user = Window.partitionBy("user_id").orderBy("event_time", "event_id")
    previous = F.lag("event_time").over(by_user)
    starts = previous.isNull() | (F.col("event_time").cast("double") - previous.cast("double") > F.lit(float(gap_s)))
    numbered = current.withColumn("__new", starts.cast("int")).withColumn(
        "__session", F.sum("__new").over(by_user.rowsBetween(Window.unboundedPreceding, 0))
    )
    session = Window.partitionBy("user_id", "__session")
    first_time = F.min("event_time").over(session)
    inherited_key = F.first("session_key", ignorenulls=True).over(
        session.orderBy("event_time").rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    inherited_start = F.min("session_start").over(session)
    keyed = numbered.withColumn(
        "session_key",
        F.coalesce(
            inherited_key,
            F.concat_ws(":", F.col("user_id"), F.unix_millis(first_time).cast("string")),
        ),
    ).withColumn("session_start", F.coalesce(inherited_start, first_time))
    return keyed.where(~F.col("__context")).drop("__context", "__new", "__session")


def with_dimensions(events: DataFrame, users: DataFrame, videos: DataFrame) -> DataFrame:
    """Attach user and video attributes; unknown ids keep their events, flagged and with nulls."""
    user_side = users.select(
        "user_id",
        F.col("country").alias("user_country"),
        F.col("age_group").alias("user_age_group"),
        F.lit(True).alias("known_user"),
    )
    video_side = videos.select("video_id", "creator_id", "topic", "upload_time", F.lit(True).alias("known_video"))
    joined = events.join(user_side, "user_id", "left").join(video_side, "video_id", "left")
    return joined.withColumn("known_user", F.coalesce("known_user", F.lit(False))).withColumn(
        "known_video", F.coalesce("known_video", F.lit(False))
    )


def with_partitions(events: DataFrame) -> DataFrame:
    return events.withColumn("event_date", F.to_date("event_time")).withColumn(
        "event_hour", F.date_format("event_time", SPARK_HOUR_FORMAT)
    )
