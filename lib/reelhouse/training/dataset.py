"""Point-in-time training sets: one labelled row per impression, with the features known then.

``build_training_set`` reads silver at one Delta version and the gold feature tables at theirs,
and replaces the Delta table ``training.table`` (partitioned by ``split``). The version of every
input goes into the commit's metadata, so a set can always be traced back to exactly what it
was built from (:func:`training_set_lineage`).

Labels. An impression (``event_type = 'impression'``, ``event_time`` in ``[start, end)``) is
attributed the outcomes (play, like, share, comment, follow, skip) of the same request, user
and video with ``event_time`` in ``[impression_time, impression_time + attribution_window_s]``.
Impressions without a ``request_id`` cannot be attributed and are skipped; of several
impressions of the same (request, user, video) the first is kept. Both are counted. An
impression is positive (``label``) when one of its outcomes was engagement as
features/engagement.py defines it (:func:`label_condition`).

Logging columns. Each example carries what its impression logged about the policy that served
it (columns.LOGGING_COLUMNS: ``variant``, ``propensity``), null when it logged none. They are for
evaluating policies (off-policy estimates weight an example by its propensity), never model inputs.

Point in time. Features as of ``T`` cover events before ``T``, so an impression may use the row
with the latest ``feature_time <= t``, never a later one. ``t`` is when the impression was
known: its ``event_time``, or the broker's receive time if the device clock ran ahead, the same
rule the feature layers apply to events. A feature table has few distinct feature times (one per
batch build) and they are whole tiles (:data:`TILE_S`, an hour), so the as-of time of every
impression in the same hour is the same: the driver collects the distinct feature times, builds
a small table ``hour -> latest feature time <= hour`` for every hour the impressions span, and a
broadcast equi-join on the hour gives each impression its as-of time per entity. The features
then come from a hash join on (entity key, as-of time). (A range join, or a search of the
feature times per row, would compare each impression with many feature rows.) An entity
without a row at its as-of time gets null features and a null ``*_feature_time``: null means
unknown, i.e. no activity in any window (an older row of the entity is stale, not used).

Shuffles. The examples are wide (about 70 columns), so moving them is what costs. Impressions
and outcomes are shuffled by user; the outcomes are attributed and the user and user x topic
features joined without moving the examples again (the build lets a join keep a partitioning on
a subset of its keys, ``spark.sql.requireAllClusterKeysForCoPartition=false``, for its own
query only); the examples then move once, by video, for the video features, and are written.

Split. By time, never by row: impressions at or after the ``1 - test_fraction`` quantile of
impression times are ``test``, those at or after the ``1 - test_fraction - valid_fraction``
quantile ``valid``, the rest ``train``. The cut times are approximate quantiles (relative error
1e-4, one aggregation pass); equal timestamps always land on the same side of a cut.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql import Observation, Window
from pyspark.sql import functions as F

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import LakeError, ReelhouseError
from reelhouse.events.contract import OUTCOME_TYPES
from reelhouse.features.engagement import ENGAGING_TYPES, WATCH_RATIO_SQL
from reelhouse.features.gold import feature_table
from reelhouse.features.registry import COMPLETION_THRESHOLD, ENTITIES, ENTITY_KEYS, TILE_S, feature_names
from reelhouse.lake import Lake, TableSpec, commit_metadata
from reelhouse.lake.partitions import hour_partition
from reelhouse.progress import stage
from reelhouse.silver.tables import SILVER_EVENTS
from reelhouse.training.columns import (
    CATEGORICAL_COLUMNS,
    CONTEXT_NUMERIC_COLUMNS,
    FEATURE_COLUMNS,
    FEATURE_TIME_COLUMNS,
    ID_COLUMNS,
    LABEL,
    LOGGING_COLUMNS,
    OUTCOME_COLUMNS,
    OUTCOME_FLAGS,
    SPLIT,
    SPLITS,
    WATCH_RATIO,
    feature_time_column,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

_JOIN_ORDER: tuple[str, ...] = ("user_topic", "user", "video")  # user-keyed first: see point_in_time_join
if sorted(_JOIN_ORDER) != sorted(ENTITIES):
    raise TypeError(f"the point-in-time join order {_JOIN_ORDER} must name every entity of the registry {ENTITIES}")
INPUT_VERSIONS_KEY = "reelhouse.input_versions"  # commit metadata: {table: version} of the inputs
INTERVAL_KEY = "reelhouse.interval"  # commit metadata: {"start": ISO, "end": ISO}
QUANTILE_ACCURACY = 10_000  # percentile_approx: relative error 1 / accuracy
ROWS_PER_PARTITION = 1_000_000  # impressions per partition of the attribution shuffle, about
# Lets a join keep a partitioning on a subset of its keys: examples partitioned by user_id join
# (user_id, as-of) and (user_id, topic, as-of) without a shuffle.
_CO_PARTITION_CONF = ("spark.sql.requireAllClusterKeysForCoPartition", "false")

_REQUEST_KEY = ("request_id", "user_id", "video_id")
_UTC = pa.timestamp("us", tz="UTC")
_KNOWN_TIME = "known_time"  # internal: when the impression was known (see the module docstring)


def training_set_table(name: str = "training_set") -> TableSpec:
    """The training set's Delta table (``config.training.table``), columns as in :mod:`columns`."""
    int32 = pa.int32()
    fields = [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("impression_time", _UTC, nullable=False),
        pa.field(SPLIT, pa.string(), nullable=False),
        pa.field(LABEL, int32, nullable=False),
        pa.field(WATCH_RATIO, pa.float64(), nullable=False),
        *(pa.field(c, int32, nullable=False) for c in OUTCOME_COLUMNS),
        *(pa.field(c, pa.string()) for c in CATEGORICAL_COLUMNS),
        pa.field("position", int32),
        pa.field("hour_of_day", int32, nullable=False),
        # As silver holds them (nullable: absent when the impression's producer logged none).
        *(SILVER_EVENTS.schema.field(c).with_nullable(True) for c in LOGGING_COLUMNS),
    ]
    for entity in ENTITIES:
        gold = feature_table(entity).schema
        fields += [pa.field(name_, gold.field(name_).type) for name_ in feature_names(entity)]
    fields += [pa.field(feature_time_column(e), _UTC) for e in ENTITIES]
    schema = pa.schema(fields)
    expected = {
        *ID_COLUMNS,
        SPLIT,
        LABEL,
        WATCH_RATIO,
        *OUTCOME_COLUMNS,
        *CATEGORICAL_COLUMNS,
        *CONTEXT_NUMERIC_COLUMNS,
        *LOGGING_COLUMNS,
        *FEATURE_COLUMNS,
        *FEATURE_TIME_COLUMNS,
    }
    if set(schema.names) != expected or len(schema.names) != len(expected):
        raise TypeError("training set schema and training/columns.py disagree")
    return TableSpec(name, schema, (SPLIT,), "labelled impressions with point-in-time features, by split")


@dataclass
class TrainingSetResult:
    table: str
    version: int | None
    start: str
    end: str
    rows: dict[str, int] = field(default_factory=dict)  # per split
    skipped_no_request_id: int = 0
    skipped_duplicates: int = 0
    valid_from: str | None = None  # the cut times (ISO): impressions at or after them are valid / test
    test_from: str | None = None
    input_versions: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# ---------------------------------------------------------------- transforms (DataFrame -> DataFrame)


def _ts(value: dt.datetime) -> Column:
    return F.lit(value).cast("timestamp")


def _by_user(frame: DataFrame, partitions: int | None, user: str) -> DataFrame:
    return frame if partitions is None else frame.repartition(partitions, user)


def attributed_impressions(
    events: DataFrame,
    start: dt.datetime,
    end: dt.datetime,
    window_s: int,
    positive_watch_ratio: float,
    partitions: int | None = None,
    carry: Sequence[str] = (),
) -> DataFrame:
    """One row per attributable impression in ``[start, end)``: IDs, context, outcomes and labels.

    ``events`` are silver rows (impressions and the outcomes that may follow them). Of several
    impressions of the same request, user and video the first is kept. The result also has
    ``known_time``, for the point-in-time join, and the impression columns named in ``carry``
    (e.g. ``variant``, for the A/B analysis).

    With ``partitions``, impressions and outcomes are shuffled by user into that many
    partitions (else by request key, as Spark chooses), and the result stays partitioned by
    user: the user-keyed feature joins can then leave the examples where they are.
    """
    context = list(dict.fromkeys([*CATEGORICAL_COLUMNS, "position", *carry]))
    is_impression = F.col("event_type") == "impression"
    is_play = F.col("event_type") == "play"
    has_duration = F.col("video_duration_ms") > 0
    completion = COMPLETION_THRESHOLD * F.col("video_duration_ms")
    relevant = events.where(
        (F.col("request_id") != "")
        & (F.col("event_time") >= _ts(start))
        & (
            (is_impression & (F.col("event_time") < _ts(end)))
            | (
                F.col("event_type").isin(list(OUTCOME_TYPES))
                & (F.col("event_time") <= _ts(end + dt.timedelta(seconds=window_s)))
            )
        )
    )

    # The first impression of a key (event_id breaks ties) is the one without a predecessor.
    # (``lag`` rather than ``row_number() = 1``: Spark would add a group limit that sorts every
    # impression once more before the shuffle.) The join below reuses the window's order by key.
    first = Window.partitionBy(*_REQUEST_KEY).orderBy("event_time", "event_id")
    impressions = (
        _by_user(relevant.where(is_impression), partitions, "user_id")
        .withColumn("__previous", F.lag(F.lit(1)).over(first))
        .where(F.col("__previous").isNull())
        .select(
            *_REQUEST_KEY,
            F.col("event_time").alias("impression_time"),
            F.least("event_time", "received_at").alias(_KNOWN_TIME),
            *context,
        )
    )
    outcome_key = [f"o_{k}" for k in _REQUEST_KEY]
    outcomes = relevant.where(~is_impression).select(
        *(F.col(k).alias(o) for k, o in zip(_REQUEST_KEY, outcome_key, strict=True)),
        F.col("event_type").alias("outcome"),
        F.col("event_time").alias("outcome_time"),
        F.when(is_play & has_duration, F.expr(WATCH_RATIO_SQL)).alias("play_ratio"),
        (is_play & has_duration & (F.col("watch_ms") >= completion)).alias("complete"),
    )
    outcomes = _by_user(outcomes, partitions, "o_user_id")
    window_end = F.col("impression_time") + F.expr(f"INTERVAL {int(window_s)} SECONDS")
    attributed = impressions.join(
        outcomes,
        [F.col(k) == F.col(o) for k, o in zip(_REQUEST_KEY, outcome_key, strict=True)]
        + [F.col("outcome_time") >= F.col("impression_time"), F.col("outcome_time") <= window_end],
        "left",
    )

    def happened(condition: Column) -> Column:
        return F.max(F.when(condition, 1).otherwise(0)).cast("int")

    conditions = {flag: F.col("outcome") == kind for kind, flag in OUTCOME_FLAGS.items()}
    conditions["completed"] = F.col("complete")
    flags = {name: happened(conditions[name]) for name in OUTCOME_COLUMNS}
    # Grouped by every impression column (one value per key): a hash aggregation, which Spark
    # compiles, where first() of the strings would fall back to an interpreted sort-based one.
    grouped = attributed.groupBy(*impressions.columns).agg(
        *(value.alias(name) for name, value in flags.items()),
        F.coalesce(F.max("play_ratio"), F.lit(0.0)).alias(WATCH_RATIO),
    )
    positive = label_condition(F.col, positive_watch_ratio)
    hour_of_day = F.floor(F.pmod(F.unix_seconds("impression_time"), 86_400) / 3_600)  # UTC, whatever the session zone
    return grouped.withColumn(LABEL, positive.cast("int")).withColumn("hour_of_day", hour_of_day.cast("int"))


def label_condition(column: Callable[[str], Any], positive_watch_ratio: float) -> Any:
    """Whether an attributed impression is positive: an outcome attributed to it was engagement
    (features/engagement.py), i.e. its best play reached ``positive_watch_ratio`` or an engaging
    type (a like, a share) followed it.

    ``column`` looks a column up by name: ``F.col`` gives the Spark condition of the build; a row's
    ``__getitem__`` gives the bool for that row (how the unit tests hold the label to serving's
    per-event rule).
    """
    positive = column(WATCH_RATIO) >= positive_watch_ratio
    for kind in ENGAGING_TYPES:
        positive = positive | (column(OUTCOME_FLAGS[kind]) == 1)
    return positive


def as_of_buckets(
    feature_times: Iterable[int], first_s: int, last_s: int, step_s: int = TILE_S
) -> list[tuple[int, int | None]]:
    """For every bucket (epoch seconds, a multiple of ``step_s``) from ``first_s``'s to ``last_s``'s:
    the latest feature time at or before the bucket's start, or None.

    Exact for every instant inside the bucket because feature times are whole buckets too
    (a misaligned one is an error).
    """
    times = sorted(set(feature_times))
    misaligned = [t for t in times if t % step_s]
    if misaligned:
        first_bad = dt.datetime.fromtimestamp(misaligned[0], dt.UTC).isoformat()
        raise ReelhouseError(
            f"feature time {first_bad} is not a multiple of {step_s} s; feature tables hold whole-hour "
            "feature times (rebuild them with jobs/build_features.py)"
        )
    buckets = []
    for bucket in range(first_s - first_s % step_s, last_s - last_s % step_s + 1, step_s):
        found = bisect.bisect_right(times, bucket)
        buckets.append((bucket, times[found - 1] if found else None))
    return buckets


def point_in_time_join(
    examples: DataFrame,
    features: Mapping[str, DataFrame],
    feature_times: Mapping[str, Iterable[int]],
    known_from: dt.datetime,
    known_until: dt.datetime,
) -> DataFrame:
    """Add each entity's features as of every example's ``known_time``, and ``<entity>_feature_time``.

    ``features``: each entity's gold rows (keys, features, ``feature_time``); ``feature_times``: the
    distinct feature times (epoch seconds) among them; ``known_from``/``known_until`` bound the
    examples' ``known_time``. See the module docstring for why this is exact and fast.
    """
    first_s, last_s = int(known_from.timestamp()), int(known_until.timestamp())
    per_entity = {e: as_of_buckets(feature_times[e], first_s, last_s) for e in ENTITIES}
    rows = [(bucket, *(per_entity[e][i][1] for e in ENTITIES)) for i, (bucket, _) in enumerate(per_entity[ENTITIES[0]])]
    ddl = "bucket long, " + ", ".join(f"__{e}_as_of long" for e in ENTITIES)
    buckets = examples.sparkSession.createDataFrame(rows, ddl).select(
        "bucket", *(F.timestamp_seconds(f"__{e}_as_of").alias(f"__{e}_as_of") for e in ENTITIES)
    )
    known_s = F.unix_seconds(_KNOWN_TIME)
    out = examples.withColumn("bucket", known_s - F.pmod(known_s, F.lit(TILE_S)))
    out = out.join(F.broadcast(buckets), "bucket", "left").drop("bucket")
    # User-keyed entities first: examples partitioned by user (see attributed_impressions) join
    # them in place; the video join then shuffles the examples once.
    for entity in _JOIN_ORDER:
        keys = list(ENTITY_KEYS[entity])
        as_of = f"__{entity}_as_of"
        needed = sorted({t for _, t in per_entity[entity] if t is not None})
        side = (
            features[entity]
            .where(F.col("feature_time").isin([_utc(t) for t in needed]))
            .select(
                *keys,
                *feature_names(entity),
                F.col("feature_time").alias(as_of),
                F.col("feature_time").alias(feature_time_column(entity)),
            )
        )
        # Hash the (smaller) feature side rather than sort the wide examples.
        out = out.join(side.hint("shuffle_hash"), [*keys, as_of], "left").drop(as_of)
    return out


def with_split(examples: DataFrame, valid_from_us: int, test_from_us: int) -> DataFrame:
    """``split`` by ``impression_time`` (epoch microseconds of the cuts): test, then valid, then train."""
    time_us = F.unix_micros("impression_time")
    split = F.when(time_us >= test_from_us, "test").when(time_us >= valid_from_us, "valid").otherwise("train")
    return examples.withColumn(SPLIT, split)


# ---------------------------------------------------------------- reading, writing, lineage


def _utc(epoch_s: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC)


def _utc_us(epoch_us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=epoch_us)


@dataclass(frozen=True)
class _ImpressionStats:
    attributable: int
    no_request_id: int
    first_known_s: int | None
    cuts_us: tuple[int, int] | None  # valid_from, test_from


def _impression_stats(
    events: DataFrame, start: dt.datetime, end: dt.datetime, valid: float, test: float
) -> _ImpressionStats:
    """One aggregation pass: counts, the earliest known time, and the split's cut times.

    The quantiles are taken before duplicate impressions are dropped (duplicates are rare and
    the cut only has to be a time).
    """
    has_request = F.col("request_id") != ""
    impressions = events.where(
        (F.col("event_type") == "impression") & (F.col("event_time") >= _ts(start)) & (F.col("event_time") < _ts(end))
    )
    row = impressions.agg(
        F.sum(F.when(has_request, 1).otherwise(0)).alias("attributable"),
        F.sum(F.when(has_request, 0).otherwise(1)).alias("no_request_id"),
        F.min(F.when(has_request, F.unix_seconds(F.least("event_time", "received_at")))).alias("first_known_s"),
        F.percentile_approx(
            F.when(has_request, F.unix_micros("event_time")), [1 - test - valid, 1 - test], QUANTILE_ACCURACY
        ).alias("cuts"),
    ).first()
    attributable = int(row["attributable"] or 0)
    return _ImpressionStats(
        attributable=attributable,
        no_request_id=int(row["no_request_id"] or 0),
        first_known_s=row["first_known_s"],
        cuts_us=tuple(row["cuts"]) if attributable else None,
    )


@contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def _silver_events(lake: Lake, spark: SparkSession, version: int, start: dt.datetime, until: dt.datetime) -> DataFrame:
    """Silver at ``version``, limited to the hours (partitions) that can hold ``[start, until]``."""
    hour = F.col("event_hour")
    # As the spec: a silver table (or version) older than a logging column reads it as null.
    return lake.read_spec(spark, SILVER_EVENTS, version=version).where(
        (hour >= hour_partition(start)) & (hour <= hour_partition(until))
    )


def _gold_features(
    lake: Lake, spark: SparkSession, entity: str, version: int, end: dt.datetime
) -> tuple[DataFrame, list[int]]:
    """An entity's feature rows at ``version`` that an impression before ``end`` may use, and their
    distinct feature times (epoch seconds): few, one per build, so collecting them is cheap."""
    table = feature_table(entity)
    frame = lake.read(spark, table.name, version=version).where(F.col("feature_time") < _ts(end))
    found = frame.select("feature_hour", F.unix_seconds("feature_time").alias("t")).distinct().collect()
    hours = sorted({r["feature_hour"] for r in found})
    return frame.where(F.col("feature_hour").isin(hours)), sorted({int(r["t"]) for r in found})


def build_training_set(
    spark: SparkSession, config: ReelhouseConfig, start: dt.datetime, end: dt.datetime
) -> TrainingSetResult:
    """Replace ``config.training.table`` with the labelled impressions of ``[start, end)``."""
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ReelhouseError(f"training interval [{start}, {end}) must be non-empty and timezone-aware (UTC)")
    settings = config.training
    lake = Lake(config.lake)
    spec = training_set_table(settings.table)
    versions = {SILVER_EVENTS.name: lake.version(SILVER_EVENTS.name, spark)}
    versions |= {feature_table(e).name: lake.version(feature_table(e).name, spark) for e in ENTITIES}

    window = dt.timedelta(seconds=settings.attribution_window_s)
    events = _silver_events(lake, spark, versions[SILVER_EVENTS.name], start, end + window)
    with stage(log, "training set: count impressions and place the split cuts") as done:
        stats = _impression_stats(events, start, end, settings.valid_fraction, settings.test_fraction)
        done(attributable=stats.attributable, without_request_id=stats.no_request_id)
    if not stats.attributable or stats.cuts_us is None or stats.first_known_s is None:
        raise ReelhouseError(
            f"silver_events v{versions[SILVER_EVENTS.name]} has no impressions with a request id in "
            f"[{start.isoformat()}, {end.isoformat()}); build silver for that interval first"
        )
    features, feature_times = {}, {}
    for entity in ENTITIES:
        features[entity], feature_times[entity] = _gold_features(
            lake, spark, entity, versions[feature_table(entity).name], end
        )

    # About a million impressions per partition keeps each task's sorts in memory.
    partitions = max(int(spark.conf.get("spark.sql.shuffle.partitions")), -(-stats.attributable // ROWS_PER_PARTITION))
    examples = attributed_impressions(
        events,
        start,
        end,
        settings.attribution_window_s,
        settings.positive_watch_ratio,
        partitions,
        carry=LOGGING_COLUMNS,
    )
    examples = point_in_time_join(examples, features, feature_times, _utc(stats.first_known_s), end)
    valid_from_us, test_from_us = stats.cuts_us
    examples = with_split(examples, valid_from_us, test_from_us)
    observed = Observation("training_set")
    examples = examples.observe(
        observed,
        *(F.sum(F.when(F.col(SPLIT) == s, 1).otherwise(0)).alias(s) for s in SPLITS),
    )
    interval = {"start": start.isoformat(), "end": end.isoformat()}
    metadata = {INPUT_VERSIONS_KEY: json.dumps(versions, sort_keys=True), INTERVAL_KEY: json.dumps(interval)}
    with (
        stage(log, f"training set: attribute, join features point in time, write {spec.name}") as done,
        _session_conf(spark, *_CO_PARTITION_CONF),  # Spark plans the query when it writes
    ):
        commit = lake.overwrite(examples, spec, metadata=metadata)
        done(version=commit.version)
    metrics = observed.get
    rows = {s: int(metrics.get(s) or 0) for s in SPLITS}
    result = TrainingSetResult(
        table=spec.name,
        version=commit.version,
        start=interval["start"],
        end=interval["end"],
        rows=rows,
        skipped_no_request_id=stats.no_request_id,
        # Every attributable impression is an example except the repeats of a key.
        skipped_duplicates=stats.attributable - sum(rows.values()),
        valid_from=_utc_us(valid_from_us).isoformat(),
        test_from=_utc_us(test_from_us).isoformat(),
        input_versions=versions,
    )
    log.info("training set %s v%s from %s: %s", spec.name, commit.version, versions, result.rows)
    return result


def training_set_lineage(lake: Lake, table_name: str, spark: SparkSession | None = None) -> dict[str, int]:
    """``{table: version}`` of the newest build of ``table_name``: the set's own version (that
    build's commit) and the versions of the inputs it was built from (delta-spark with ``spark``)."""
    for commit in lake.history(table_name, spark=spark):  # newest first
        recorded = commit_metadata(commit).get(INPUT_VERSIONS_KEY)
        if recorded:
            inputs = {name: int(version) for name, version in json.loads(recorded).items()}
            return {table_name: int(commit["version"]), **inputs}
    raise LakeError(
        f"{table_name} has no commit with recorded input versions; build it with jobs/build_training_set.py"
    )
