"""Materialisation: the batch layer's (gold) feature rows of one feature time, into the online store.

The rows never pass through the driver. The driver only decides what to load (one gold
partition per entity, at a pinned Delta version) and sums the counts the tasks return; Spark
tasks read the partition, turn its rows into :class:`~reelhouse.online.store.FeatureRow` and
write them in chunks of ``online_store.materialize_chunk_rows`` through a store each task opens
itself. A backfill of any size therefore needs driver memory for a handful of integers.

Which feature time: by default the latest ``feature_time`` of each gold table, found from the
table's partition values (``feature_hour``) in the Delta log, without scanning data. A given
feature time loads that hour instead, e.g. to backfill an older hour: rows carry
``feature_version(feature_time)``, and the stores' versioned upsert keeps any newer row, so a
backfill can run at any moment without rolling the store back. The same version ranks above
every speed-layer value of the same feature time (see :func:`~reelhouse.online.store.feature_version`),
so the batch row, complete and deduplicated, replaces what the speed layer wrote for that hour.
Re-running a load writes the same versions again and changes nothing.

Rows expire after the store's default TTL, counted from their feature time, as the speed
layer's rows do.

The writers are bounded: the partition is coalesced (no shuffle) to at most
``spark.sql.shuffle.partitions`` tasks, so an embedded SQLite store sees a few concurrent
writer processes, which its lock serialises (see the busy timeout in
:class:`~reelhouse.online.sqlite.SqliteOnlineStore`), and a Redis server a few pipelines.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
from pyspark.sql import functions as F

from reelhouse.config import OnlineStoreConfig, ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.features.gold import feature_table
from reelhouse.features.registry import ENTITIES, ENTITY_KEYS, entity_key, feature_names
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.lake.partitions import hour_partition, partition_hour
from reelhouse.online.store import FeatureRow, FeatureValue, OnlineStore, feature_version, open_online_store
from reelhouse.progress import progress_bar, stage

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# One row per writer task: the only data that travels back to the driver.
_COUNTS_SCHEMA = pa.schema(
    [
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("changed", pa.int64(), nullable=False),
        pa.field("chunks", pa.int64(), nullable=False),
    ]
)
_COUNTS_DDL = "rows long, changed long, chunks long"


@dataclass
class ViewLoad:
    """What one online view received from one gold table."""

    table: str
    delta_version: int  # the gold snapshot read, so a load can be traced and repeated
    feature_time: str
    rows: int = 0  # gold rows written to the store
    changed: int = 0  # of those, rows that created or replaced a stored row (0 on a re-run)
    tasks: int = 0  # Spark tasks that wrote
    chunks: int = 0  # store writes, each of at most ``materialize_chunk_rows`` rows


@dataclass
class MaterializeResult:
    views: dict[str, ViewLoad] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def parse_entities(text: str | None) -> tuple[str, ...] | None:
    """``"video,user"`` -> ``("video", "user")``; None or blank -> None (every entity)."""
    if text is None or not text.strip():
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_entities(entities: Iterable[str] | None) -> tuple[str, ...]:
    if entities is None:
        return ENTITIES
    chosen = tuple(dict.fromkeys(entities))
    unknown = [e for e in chosen if e not in ENTITY_KEYS]
    if unknown or not chosen:
        raise ReelhouseError(f"unknown entities {unknown or chosen!r}; choose from {', '.join(ENTITIES)}")
    return chosen


def feature_hour(feature_time: dt.datetime) -> str:
    """The gold partition of ``feature_time`` (a timezone-aware whole hour)."""
    if feature_time.tzinfo is None or feature_time.minute or feature_time.second or feature_time.microsecond:
        raise ReelhouseError(
            f"feature time {feature_time} must be a timezone-aware whole hour, e.g. 2026-11-22T00:00:00+00:00"
        )
    return hour_partition(feature_time)


def feature_hours(partitions: Iterable[dict[str, str | None]]) -> list[str]:
    """Every ``feature_hour`` of a gold snapshot's partitions (:meth:`Lake.partition_values`), oldest first.

    Hours sort as text because the format is fixed-width.
    """
    hours = {p.get("feature_hour") for p in partitions}
    return sorted(h for h in hours if h)


class ChunkWriter:
    """Executor side: gold rows (Arrow batches) -> the online view, in chunks; yields its counts.

    Picklable (configuration and names only): each task opens its own store, on first use, and
    closes it when its rows are written, so no connection is shared between processes.
    """

    def __init__(self, store_config: OnlineStoreConfig, entity: str, view: str) -> None:
        self.store_config = store_config
        self.entity = entity
        self.view = view
        self.keys = ENTITY_KEYS[entity]
        self.features = feature_names(entity)
        self.chunk_rows = store_config.materialize_chunk_rows

    def feature_rows(self, batch: pa.RecordBatch) -> Iterator[FeatureRow]:
        """The batch's rows as feature rows: the key columns joined, NaN turned into None."""
        keys = [batch.column(k).to_pylist() for k in self.keys]
        values = [batch.column(name).to_pylist() for name in self.features]
        # Spark may label the zone Etc/UTC; epoch microseconds are unambiguous.
        micros = batch.column("feature_time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        versions: dict[int, tuple[dt.datetime, int]] = {}
        for i, us in enumerate(micros):
            if us not in versions:
                moment = _EPOCH + dt.timedelta(microseconds=us)
                versions[us] = (moment, feature_version(moment))
            moment, version = versions[us]
            key = entity_key(self.entity, {k: column[i] for k, column in zip(self.keys, keys, strict=True)})
            row: dict[str, FeatureValue] = {}
            for name, column in zip(self.features, values, strict=True):
                value = column[i]
                row[name] = None if isinstance(value, float) and math.isnan(value) else value
            yield FeatureRow(entity_key=key, values=row, feature_time=moment, version=version)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store: OnlineStore | None = None
        rows = changed = chunks = 0
        pending: list[FeatureRow] = []
        try:
            for batch in batches:
                for row in self.feature_rows(batch):
                    pending.append(row)
                    if len(pending) < self.chunk_rows:
                        continue
                    store = store or open_online_store(self.store_config)
                    changed += store.write(self.view, pending)
                    rows, chunks, pending = rows + len(pending), chunks + 1, []
            if pending:
                store = store or open_online_store(self.store_config)
                changed += store.write(self.view, pending)
                rows, chunks = rows + len(pending), chunks + 1
        finally:
            if store is not None:
                store.close()
        if chunks:
            yield pa.RecordBatch.from_pylist(
                [{"rows": rows, "changed": changed, "chunks": chunks}], schema=_COUNTS_SCHEMA
            )


def materialize_online(
    spark: SparkSession,
    config: ReelhouseConfig,
    feature_time: dt.datetime | None = None,
    entities: Iterable[str] | None = None,
) -> MaterializeResult:
    """Load one feature time of each entity's gold table into its online view (``<entity>_features``).

    ``feature_time``: a timezone-aware whole hour; by default each table's latest. A table
    without that hour (or without any) is an error: loading nothing would look like success.
    """
    chosen = _check_entities(entities)
    wanted = None if feature_time is None else feature_hour(feature_time)
    lake = Lake(config.lake)
    max_tasks = max(1, int(spark.conf.get("spark.sql.shuffle.partitions") or config.spark.shuffle_partitions))
    result = MaterializeResult()
    with progress_bar(len(chosen), "materialise: gold into the online store") as loaded:
        for entity in chosen:
            spec = feature_table(entity)
            view = features_view(entity)
            version = lake.version(spec.name, spark)
            # From the Delta log at that version, without scanning data.
            hours = feature_hours(lake.partition_values(spec.name, spark, version))
            if not hours:
                raise ReelhouseError(f"{spec.name} v{version} holds no features yet: run build_features first")
            hour = wanted or hours[-1]
            if hour not in hours:
                raise ReelhouseError(
                    f"{spec.name} v{version} has no feature_hour {hour} (latest: {hours[-1]}): build it first"
                )
            frame = (
                lake.read(spark, spec.name, version=version)
                .where(F.col("feature_hour") == hour)
                .select(*ENTITY_KEYS[entity], *feature_names(entity), "feature_time")
                .coalesce(max_tasks)
            )
            counts = frame.mapInArrow(ChunkWriter(config.online_store, entity, view), _COUNTS_DDL).agg(
                F.count(F.lit(1)).alias("tasks"),
                F.coalesce(F.sum("rows"), F.lit(0)).alias("rows"),
                F.coalesce(F.sum("changed"), F.lit(0)).alias("changed"),
                F.coalesce(F.sum("chunks"), F.lit(0)).alias("chunks"),
            )
            with stage(log, f"materialise: {spec.name} v{version} {hour} -> {view}") as done:
                (total,) = counts.collect()  # one row of sums, whatever the table's size
                done(rows=int(total["rows"]), changed=int(total["changed"]))
            moment = partition_hour(hour)
            load = ViewLoad(
                table=spec.name,
                delta_version=version,
                feature_time=moment.isoformat(),
                rows=int(total["rows"]),
                changed=int(total["changed"]),
                tasks=int(total["tasks"]),
                chunks=int(total["chunks"]),
            )
            result.views[view] = load
            log.info(
                "%s: %d rows of %s v%d (feature time %s) in %d tasks, %d chunks; %d changed the store",
                view,
                load.rows,
                spec.name,
                version,
                load.feature_time,
                load.tasks,
                load.chunks,
                load.changed,
            )
            loaded()
    return result
