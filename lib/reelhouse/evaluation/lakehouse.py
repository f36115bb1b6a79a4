"""Evaluation data from the lake: silver events split by time.

Positives are engaged (user, video) pairs exactly as recall learns them
(:func:`reelhouse.recall.interactions.engagement_pairs`: plays by watch ratio, likes and
shares). The split is by event time, up to the latest engaging event:

- at least three days of events: the last day is ``test``, the day before it ``valid``, and the
  ``recall.lookback_days`` before that train the models;
- two to three days: the last day is ``test``, no ``valid``;
- less (a short simulation): the last ``test_fraction`` of the time span is ``test`` and the
  ``valid_fraction`` before it ``valid``.

Videos get their topics and upload times from ``dim_videos``, and embeddings from
``recall.embeddings_path`` when configured. Held-out pairs a user already engaged with in the
training window are not held-out positives (they are masked, so could not be found).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from reelhouse.config import RecallConfig, ReelhouseConfig
from reelhouse.errors import EvaluationError
from reelhouse.evaluation.data import held_out_positives, with_extra_ids
from reelhouse.evaluation.logfile import SplitPolicy
from reelhouse.evaluation.protocol import EvaluationData
from reelhouse.lake import Lake
from reelhouse.recall.interactions import (
    ENGAGEMENT,
    engagement_pairs,
    interactions_from_events,
    read_item_vectors,
)
from reelhouse.silver.tables import DIM_VIDEOS, SILVER_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

HOLDOUT = dt.timedelta(days=1)
# The silver columns positives are computed from.
EVENT_COLUMNS = ("user_id", "video_id", "event_type", "event_time", "received_at", "watch_ms", "video_duration_ms")


def holdout_starts(
    first: dt.datetime, end: dt.datetime, policy: SplitPolicy = SplitPolicy()
) -> tuple[dt.datetime | None, dt.datetime]:
    """``(valid start or None, test start)`` for events in ``[first, end)`` (see the module docstring)."""
    span = end - first
    if span >= 3 * HOLDOUT:
        return end - 2 * HOLDOUT, end - HOLDOUT
    if span >= 2 * HOLDOUT:
        return None, end - HOLDOUT
    test_start = end - span * policy.test_fraction
    return (test_start - span * policy.valid_fraction if policy.valid_fraction > 0 else None), test_start


def _pairs(events: DataFrame, start: dt.datetime, end: dt.datetime) -> tuple[np.ndarray, np.ndarray]:
    from pyspark.sql import functions as F

    window = events.where((F.col("event_time") >= F.lit(start)) & (F.col("event_time") < F.lit(end)))
    days = max(1, math.ceil((end - start) / dt.timedelta(days=1)) + 1)
    pairs = engagement_pairs(window, end, days).select("user_id", "video_id").toArrow()
    return (
        pairs.column("user_id").to_numpy(zero_copy_only=False).astype(object),
        pairs.column("video_id").to_numpy(zero_copy_only=False).astype(object),
    )


def evaluation_data_from_lake(
    spark: SparkSession, config: ReelhouseConfig, policy: SplitPolicy = SplitPolicy(), end: dt.datetime | None = None
) -> EvaluationData:
    """Evaluation data of the lake's ``silver_events`` (and ``dim_videos``, embeddings if configured),
    of the events before ``end`` if given (a scheduled run evaluates its interval, whatever came later)."""
    from pyspark.sql import functions as F

    lake = Lake(config.lake)
    # Pinned, so the events read and the version reported agree.
    silver_version = lake.version(SILVER_EVENTS.name, spark)
    events = lake.read(spark, SILVER_EVENTS.name, version=silver_version).select(*EVENT_COLUMNS)
    if end is not None:
        events = events.where(F.col("event_time") < F.lit(end))
    items = (
        lake.read_arrow(spark, DIM_VIDEOS.name, columns=["video_id", "topic", "upload_time"])
        if lake.exists(DIM_VIDEOS.name, spark)
        else None
    )
    recall = config.recall
    vectors = (
        read_item_vectors(
            recall.embeddings_path,
            recall.embeddings_item_col,
            recall.embeddings_vector_col,
            dict(config.lake.storage_options),
        )
        if recall.embeddings_path
        else None
    )
    data = evaluation_data_from_events(events, recall, items, vectors, policy)
    data.description["source"] = f"lake {SILVER_EVENTS.name} (version {silver_version})" + (
        f", events before {end.isoformat()}" if end is not None else ""
    )
    return data


def evaluation_data_from_events(
    events: DataFrame,
    recall: RecallConfig,
    items: pa.Table | None = None,
    vectors: pa.Table | None = None,
    policy: SplitPolicy = SplitPolicy(),
) -> EvaluationData:
    """Train interactions and held-out positives of silver-shaped ``events`` (module docstring).

    ``events`` needs the columns of :data:`EVENT_COLUMNS`; ``items`` and ``vectors`` are as for
    :func:`~reelhouse.recall.interactions.interactions_from_events`.
    """
    from pyspark.sql import functions as F

    bounds = (
        events.where(F.col("event_type").isin(list(ENGAGEMENT.event_types)))
        .agg(F.min("event_time").alias("first"), F.max("event_time").alias("last"))
        .collect()[0]
    )
    if bounds["first"] is None:
        raise EvaluationError(
            "the events hold no engagement (plays, likes, shares); simulate traffic and build silver first"
        )
    first, last = (t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (bounds["first"], bounds["last"]))
    end = last + dt.timedelta(microseconds=1)
    valid_start, test_start = holdout_starts(first, end, policy)
    train_end = valid_start or test_start
    log.info("lake evaluation: train before %s, valid from %s, test %s to %s", train_end, valid_start, test_start, end)

    train = interactions_from_events(events, recall, train_end, items=items, vectors=vectors)
    test_users, test_items = _pairs(events, test_start, end)
    valid_users, valid_items = _pairs(events, valid_start, test_start) if valid_start else (np.zeros(0, object),) * 2
    train = with_extra_ids(train, np.concatenate([test_users, valid_users]), np.concatenate([test_items, valid_items]))
    seen = train.seen()
    test = held_out_positives(train, test_users, test_items, seen)
    if test.nnz == 0:
        raise EvaluationError(f"no new engaged pairs in the test window from {test_start}; more traffic is needed")
    valid = held_out_positives(train, valid_users, valid_items, seen) if len(valid_users) else None
    return EvaluationData(
        train=train,
        test=test,
        valid=valid,
        seen=seen,
        has_time=True,
        description={
            "source": "events",
            "train_end": train_end.isoformat(),
            "valid_start": valid_start.isoformat() if valid_start else None,
            "test_start": test_start.isoformat(),
            "test_end": end.isoformat(),
        },
    )
