"""The interactions recall learns from: silver events (or any log) -> :class:`Interactions`.

A pair's weight is the feature registry's ``engagement`` measure summed over the pair's events
in ``[as_of - lookback_days, as_of)``: the watch ratio of each play (capped at 1) + 1 per like
+ 2 per share. Impressions, comments, skips and follows add nothing, so a pair with only
those is not a positive and is left out. ``time_s`` is the pair's latest engaging event.

The aggregation runs in Spark; only the aggregated pairs come to the driver (as Arrow). Codes
are dense and follow the sorted ids, so the same pairs always give the same codes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reelhouse.config import RecallConfig
from reelhouse.errors import ReelhouseError
from reelhouse.features.registry import MEASURES
from reelhouse.recall.base import Interactions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

ENGAGEMENT = MEASURES["engagement"]


def engagement_pairs(events: DataFrame, as_of: dt.datetime, lookback_days: int) -> DataFrame:
    """``user_id, video_id, weight, time_s`` per engaged pair of ``events`` in the lookback window.

    An event's time is its ``event_time``, but never after ``received_at`` when the events carry
    it (the features' rule: a device clock running ahead cannot move an event past ``as_of``).
    """
    from pyspark.sql import functions as F

    if as_of.tzinfo is None:
        raise ReelhouseError(f"as_of {as_of} must be timezone-aware (UTC)")
    when = F.col("event_time")
    if "received_at" in events.columns:
        when = F.least(when, F.col("received_at"))
    end = F.lit(as_of).cast("timestamp")
    start = F.lit(as_of - dt.timedelta(days=lookback_days)).cast("timestamp")
    engaged = (
        events.withColumn("__time", when)
        .where((F.col("__time") >= start) & (F.col("__time") < end))
        .where(F.col("event_type").isin(list(ENGAGEMENT.event_types)))
        .where(F.col("user_id").isNotNull() & F.col("video_id").isNotNull())
        .withColumn("__weight", F.coalesce(F.expr(ENGAGEMENT.value).cast("double"), F.lit(0.0)))
    )
    return (
        engaged.groupBy("user_id", "video_id")
        .agg(F.sum("__weight").alias("weight"), (F.unix_micros(F.max("__time")) / 1e6).alias("time_s"))
        .where(F.col("weight") > 0)
    )


def interactions_from_events(
    events: DataFrame | pa.Table,
    config: RecallConfig,
    as_of: dt.datetime,
    *,
    items: pa.Table | None = None,
    vectors: pa.Table | None = None,
    spark: SparkSession | None = None,
) -> Interactions:
    """Interactions of ``events`` (silver columns) as of ``as_of``, with item attributes and vectors.

    ``events`` is a Spark DataFrame, or an Arrow table that ``spark`` turns into one.
    ``items`` (``video_id, topic, upload_time``, e.g. ``dim_videos``) gives the items their
    attributes, and videos uploaded in the ``new_video_hours`` before ``as_of`` join the item
    space even without interactions (exploration picks them). ``vectors`` (the embeddings
    columns of ``config``) attaches embeddings, and every item with one joins the item space
    (content recall can find videos nobody has engaged with yet).
    """
    if isinstance(events, pa.Table):
        if spark is None:
            raise ReelhouseError("interactions_from_events needs `spark` to aggregate an Arrow table of events")
        events = spark.createDataFrame(events)
    pairs = engagement_pairs(events, as_of, config.lookback_days).toArrow()
    log.info("recall interactions as of %s: %d engaged pairs", as_of, pairs.num_rows)
    extra: list[Any] = []
    if items is not None:
        extra.extend(new_videos(items, as_of, config.new_video_hours))
    if vectors is not None:
        extra.extend(vectors.column(config.embeddings_item_col).drop_null().to_pylist())
    interactions = interactions_from_frame(pairs, "user_id", "video_id", "weight", "time_s", extra_items=extra)
    if items is not None:
        interactions = with_item_attributes(interactions, items)
    if vectors is not None:
        interactions = with_item_vectors(
            interactions, vectors, config.embeddings_item_col, config.embeddings_vector_col
        )
    return interactions


def interactions_from_frame(
    frame: pd.DataFrame | pa.Table,
    user_col: str,
    item_col: str,
    weight_col: str | None = None,
    time_col: str | None = None,
    *,
    extra_items: Iterable[Any] = (),
) -> Interactions:
    """Interactions from any table of (user, item[, weight][, time]) rows, e.g. an imported log.

    Repeated pairs are merged (weights summed, latest time kept); pairs whose weight is not
    positive are dropped. Without ``weight_col`` every row weighs 1; without ``time_col`` times
    are 0. ``time_col`` may hold timestamps or epoch seconds. ``extra_items`` join the item
    space after the items of the rows (codes of items with interactions do not depend on them).
    """
    df = frame.to_pandas() if isinstance(frame, pa.Table) else frame
    missing = [c for c in (user_col, item_col, weight_col, time_col) if c is not None and c not in df.columns]
    if missing:
        raise ReelhouseError(f"interactions: columns {missing} not in the table (it has {list(df.columns)})")
    weight = df[weight_col].to_numpy(np.float64) if weight_col else np.ones(len(df))
    time_s = _epoch_seconds(df[time_col]) if time_col else np.zeros(len(df))
    pairs = pd.DataFrame({"u": df[user_col].to_numpy(), "i": df[item_col].to_numpy(), "w": weight, "t": time_s})
    pairs = pairs.dropna(subset=["u", "i"])
    pairs = pairs.groupby(["u", "i"], sort=True, as_index=False).agg(w=("w", "sum"), t=("t", "max"))
    pairs = pairs[pairs["w"] > 0]
    user_codes, user_ids = pd.factorize(pairs["u"], sort=True)
    item_codes, item_ids = pd.factorize(pairs["i"], sort=True)
    item_ids = np.asarray(item_ids, dtype=object)
    known = set(item_ids.tolist())
    added = sorted({i for i in extra_items if i is not None and i not in known})
    if added:
        item_ids = np.concatenate([item_ids, np.asarray(added, dtype=object)])
    return Interactions(
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=item_ids,
        user=user_codes.astype(np.int32),
        item=item_codes.astype(np.int32),
        weight=pairs["w"].to_numpy(np.float32),
        time_s=pairs["t"].to_numpy(np.float64),
    )


def _epoch_seconds(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    return column.to_numpy(np.float64)


def new_videos(items: pa.Table, as_of: dt.datetime, hours: float, item_col: str = "video_id") -> list[Any]:
    """Videos of ``items`` uploaded in ``[as_of - hours, as_of]``: the exploration pool."""
    upload = _upload_seconds(items)
    ids = items.column(item_col).to_numpy(zero_copy_only=False)
    end = as_of.timestamp()
    fresh = (upload >= end - hours * 3600) & (upload <= end)
    return [i for i in ids[fresh] if i is not None]


def _upload_seconds(items: pa.Table) -> np.ndarray:
    if "upload_time" not in items.column_names:
        return np.full(items.num_rows, np.nan)
    column = items.column("upload_time")
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return column.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _rows_of(interactions: Interactions, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """For each item code, its row in ``ids`` (the first, if repeated); -1 when absent."""
    keys = ids.to_pandas()
    first = ~keys.duplicated(keep="first").to_numpy()
    positions = np.flatnonzero(first)
    found = pd.Index(keys[first]).get_indexer(interactions.item_ids)
    if positions.size == 0:
        return np.full(interactions.n_items, -1, dtype=np.int64)
    return np.where(found >= 0, positions[found], -1).astype(np.int64)


def with_item_attributes(interactions: Interactions, items: pa.Table, item_col: str = "video_id") -> Interactions:
    """A copy with ``topic`` (object, None when unknown) and ``upload_time_s`` (NaN when unknown) per item code."""
    rows = _rows_of(interactions, items.column(item_col))
    known = rows >= 0
    attributes = dict(interactions.item_attributes)
    if "topic" in items.column_names:
        topics = np.asarray(items.column("topic").to_pylist(), dtype=object)
        topic = np.full(interactions.n_items, None, dtype=object)
        topic[known] = topics[rows[known]]
        attributes["topic"] = topic
    upload = np.full(interactions.n_items, np.nan)
    upload[known] = _upload_seconds(items)[rows[known]]
    attributes["upload_time_s"] = upload
    return replace(interactions, item_attributes=attributes)


def with_item_vectors(interactions: Interactions, vectors: pa.Table, item_col: str, vector_col: str) -> Interactions:
    """A copy with dense vectors (``item_col`` + a list-of-floats ``vector_col``); items without one are flagged.

    All vectors must have the same length; null, empty and all-zero vectors count as missing.
    """
    import pyarrow.compute as pc

    for column in (item_col, vector_col):
        if column not in vectors.column_names:
            raise ReelhouseError(
                f"embeddings: column {column!r} missing (columns: {vectors.column_names}); "
                "set recall.embeddings_item_col / embeddings_vector_col"
            )
    lists = vectors.column(vector_col).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    dims = np.unique(lengths[lengths > 0])
    if len(dims) > 1:
        raise ReelhouseError(f"embeddings: vectors of different lengths {dims[:5].tolist()} in {vector_col!r}")
    dim = int(dims[0]) if len(dims) else 0
    present = pa.array(lengths > 0)
    values = pc.list_flatten(lists.filter(present)).to_numpy(zero_copy_only=False).astype(np.float32)
    rows = _rows_of(interactions, vectors.column(item_col).filter(present))
    matrix = np.zeros((interactions.n_items, dim), dtype=np.float32)
    has = rows >= 0
    if dim:
        matrix[has] = values.reshape(-1, dim)[rows[has]]
        has &= np.linalg.norm(matrix, axis=1) > 0
    log.info("embeddings: %d of %d items have a %d-dimensional vector", int(has.sum()), interactions.n_items, dim)
    return replace(interactions, item_vectors=matrix, has_vector=has)


def read_item_vectors(
    path: str, item_col: str, vector_col: str, storage_options: dict[str, str] | None = None
) -> pa.Table:
    """The embeddings Parquet (local path or object-store URI), only its item and vector columns."""
    import pyarrow.parquet as pq

    from reelhouse.lake.storage import filesystem_for

    fs, inner = filesystem_for(path, storage_options)
    try:
        return pq.read_table(inner, columns=[item_col, vector_col], filesystem=fs)
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise ReelhouseError(
            f"cannot read embeddings {path} (columns {item_col!r}, {vector_col!r}): {e}; "
            "check recall.embeddings_path and the column settings"
        ) from e
