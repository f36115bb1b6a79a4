"""Batch (gold) computation of the registry's features: pure DataFrame -> DataFrame.

Point in time: the value of a feature *as of* ``t`` uses exactly the events with
``t - window <= time < t``; nothing at or after ``t``. Each output row is stamped
``feature_time = t``, so training can join the value known at an impression's time.
Entities without events in the longest window get no row (their counts are 0, their rates
unknown); readers treat a missing row as such.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from reelhouse.features.registry import (
    AGES,
    DECAYED,
    ENTITY_KEYS,
    MEASURES,
    SHARES,
    TILE_S,
    WINDOWS,
    features_for,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def _sum_name(measure: str, window: str) -> str:
    return f"__{measure}_{window}"


def feature_event_time(event_time: str = "event_time", received: str = "received_at") -> Column:
    """An event's time for features: its own time, but never after the broker received it."""
    return F.least(F.col(event_time), F.col(received))


def _since(end: Column, seconds: int) -> Column:
    return F.col("event_time") >= end - F.expr(f"INTERVAL {seconds} SECONDS")


def window_features(events: DataFrame, entity: str, as_of: dt.datetime) -> DataFrame:
    """One row per entity with every windowed, decayed and age feature of ``entity`` as of ``as_of``.

    ``events`` needs ``event_type``, ``event_time`` (already the feature time of the event, see
    :func:`feature_event_time`) and the entity's key columns, plus whatever columns the
    measures read (``watch_ms``, ``video_duration_ms``) and, for videos, ``upload_time``.
    Share features join two entities' rows: see :func:`with_shares`.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    specs = features_for(entity)
    decayed = [d for d in DECAYED if d.entity == entity]
    ages = [a for a in AGES if a.entity == entity]
    keys = list(ENTITY_KEYS[entity])
    windows = {f.window for f in specs} | {d.window for d in decayed}
    end = F.lit(as_of).cast("timestamp")
    longest = max(WINDOWS[w] for w in windows)
    recent = events.where((F.col("event_time") < end) & _since(end, longest))
    needed = sorted({(m, f.window) for f in specs for m in f.measures})
    sums = []
    for measure_name, window in needed:
        measure = MEASURES[measure_name]
        applies = F.col("event_type").isin(list(measure.event_types)) & _since(end, WINDOWS[window])
        sums.append(
            F.sum(F.when(applies, F.expr(measure.value)).otherwise(F.lit(0))).alias(_sum_name(measure_name, window))
        )
    as_of_s = int(as_of.timestamp())
    for feature in decayed:
        measure = MEASURES[feature.measure]
        tile_end = F.floor(F.unix_timestamp("event_time") / TILE_S) * TILE_S + TILE_S
        weight = F.pow(F.lit(0.5), (F.lit(as_of_s) - tile_end) / F.lit(float(feature.half_life_s)))
        applies = F.col("event_type").isin(list(measure.event_types)) & _since(end, WINDOWS[feature.window])
        sums.append(
            F.sum(F.when(applies, F.expr(measure.value) * weight).otherwise(F.lit(0.0))).alias(f"__{feature.name}")
        )
    for age in ages:
        sums.append(F.max(age.attribute).alias(f"__{age.name}"))
    grouped = recent.groupBy(*keys).agg(*sums)
    columns = [F.col(k) for k in keys]
    for spec in specs:
        numerator = F.col(_sum_name(spec.numerator, spec.window))
        if spec.denominator is None:
            value = numerator
        else:
            denominator = F.col(_sum_name(spec.denominator, spec.window))
            value = F.when(denominator > 0, numerator.cast("double") / denominator)
        columns.append(value.alias(spec.name))
    columns += [F.col(f"__{d.name}").cast("double").alias(d.name) for d in decayed]
    columns += [(F.lit(as_of_s) - F.unix_timestamp(f"__{a.name}")).cast("long").alias(a.name) for a in ages]
    columns.append(end.alias("feature_time"))
    return grouped.select(*columns)


def with_shares(frame: DataFrame, entity: str, others: dict[str, DataFrame]) -> DataFrame:
    """Add ``entity``'s share features, dividing by the features of the entities in ``others``
    (joined on their keys, which are a subset of ``entity``'s)."""
    for share in (s for s in SHARES if s.entity == entity):
        owner = share.denominator_entity
        if owner not in others:
            raise ValueError(f"{share.name} needs the {owner} features")
        keys = list(ENTITY_KEYS[owner])
        side = others[owner].select(*keys, F.col(share.denominator).alias("__denominator"))
        frame = frame.join(side, keys, "left")
        frame = frame.withColumn(
            share.name,
            F.when(F.col("__denominator") > 0, F.col(share.numerator).cast("double") / F.col("__denominator")),
        ).drop("__denominator")
    return frame
