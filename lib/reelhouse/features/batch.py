"""Batch (gold) computation of the registry's features: pure DataFrame -> DataFrame.

Point in time: the value of a feature *as of* ``t`` uses exactly the events with
``t - window < event_time <= t``; nothing after ``t``. Each output row is stamped
``feature_time = t``, so training can join the value known at an impression's time.
Entities without events in the longest window get no row (their counts are 0, their rates
unknown); readers treat a missing row as such.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from reelhouse.features.registry import ENTITY_KEYS, MEASURES, WINDOWS, features_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _sum_name(measure: str, window: str) -> str:
    return f"__{measure}_{window}"


def window_features(events: DataFrame, entity: str, as_of: dt.datetime) -> DataFrame:
    """One row per entity with every windowed feature of ``entity`` as of ``as_of``.

    ``events`` needs ``event_type``, ``event_time`` and the entity's key columns, plus
    whatever columns the measures read (``watch_ms``, ``video_duration_ms``).
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    specs = features_for(entity)
    keys = list(ENTITY_KEYS[entity])
    windows = sorted({f.window for f in specs}, key=WINDOWS.__getitem__)
    end = F.lit(as_of).cast("timestamp")
    longest = max(WINDOWS[w] for w in windows)
    recent = events.where(
        (F.col("event_time") <= end) & (F.col("event_time") > end - F.expr(f"INTERVAL {longest} SECONDS"))
    )
    needed = sorted({(m, f.window) for f in specs for m in f.measures})
    sums = []
    for measure_name, window in needed:
        measure = MEASURES[measure_name]
        applies = F.col("event_type").isin(list(measure.event_types)) & (
            F.col("event_time") > end - F.expr(f"INTERVAL {WINDOWS[window]} SECONDS")
        )
        sums.append(F.sum(F.when(applies, F.expr(measure.value)).otherwise(F.lit(0))).alias(_sum_name(measure_name, window)))
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
    columns.append(end.alias("feature_time"))
    return grouped.select(*columns)
