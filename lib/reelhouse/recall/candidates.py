"""Candidate generation as of an interval end: silver -> every source -> blend -> Delta.

Reads silver events of the lookback window (and ``dim_videos`` for topics and upload times,
the embeddings file if configured), tunes each source's settings on the window's latest pairs
(:mod:`reelhouse.recall.tuning`; the chosen values are in the result and the log), fits each
source whose quota is positive on the whole window, blends every
user's answers and replaces ``user_candidates`` and ``item_neighbours`` (see
:mod:`reelhouse.recall.tables`). Rebuilding the same ``as_of`` from the same silver version
gives the same tables: sources are seeded and codes follow sorted ids.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from reelhouse.config import RecallConfig, ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.lake import Lake, TableSpec
from reelhouse.lake.partitions import hour_partition
from reelhouse.recall.als import AlsSource
from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.blend import blend
from reelhouse.recall.content import ContentNeighboursSource, EmbeddingSource, TopicAffinitySource
from reelhouse.recall.covisit import CovisitationSource
from reelhouse.recall.ease import EaseSource
from reelhouse.recall.interactions import interactions_from_events, new_videos, read_item_vectors
from reelhouse.recall.popularity import PopularitySource
from reelhouse.recall.tables import ANY_USER, candidates_table, neighbours_table
from reelhouse.recall.tuning import tune_recall
from reelhouse.silver.tables import DIM_VIDEOS, SILVER_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SOURCES = ("ease", "als", "covisit", "topic", "embedding", "content", "popularity")
USER_BATCH = 20_000  # users recommended and blended at once; bounds the driver's memory
FETCH_FACTOR = 2  # a source answers this many times its quota, so overlaps do not empty its share


@dataclass
class CandidatesResult:
    as_of: str
    silver_version: int
    users: int = 0
    items: int = 0
    pairs: int = 0
    sources: list[str] = field(default_factory=list)
    tuning: dict[str, dict[str, object]] = field(default_factory=dict)  # settings chosen on validation per source
    candidates: dict[str, int] = field(default_factory=dict)  # blended candidates per source
    rows: dict[str, int] = field(default_factory=dict)  # rows written per table
    versions: dict[str, int | None] = field(default_factory=dict)  # new version per table

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def make_source(
    spark: SparkSession | None, recall: RecallConfig, name: str, interactions: Interactions, as_of_s: float | None
) -> RecallSource | None:
    """Source ``name`` configured by ``recall``, unfitted; None when these interactions cannot feed it.

    ``spark`` is only needed for ALS; ``as_of_s`` is where the decayed sources measure age from
    (None: the latest interaction they are fitted on).
    """
    if name == "popularity":
        return PopularitySource(recall.popularity_half_life_h, as_of_s)
    if name == "ease":
        return EaseSource(recall.ease_reg, recall.ease_max_items)
    if name == "als":
        if spark is None:
            raise ReelhouseError("the ALS source needs a SparkSession; set recall.quotas.als to 0 to run without")
        return AlsSource(spark, recall.als_rank, recall.als_reg, recall.als_alpha, recall.als_max_iter, recall.seed)
    if name == "covisit":
        return CovisitationSource(recall.covisit_neighbours, recall.covisit_recent_items, shrink=recall.covisit_shrink)
    if name == "topic":
        if "topic" not in interactions.item_attributes:
            log.warning("recall: no video topics (dim_videos missing); the topic source is skipped")
            return None
        return TopicAffinitySource(recall.popularity_half_life_h, as_of_s)
    if name in ("embedding", "content"):
        if interactions.has_vector is None or not interactions.has_vector.any():
            if recall.embeddings_path:
                log.warning(
                    "recall: no video in %s has an embedding; the %s source is skipped", recall.embeddings_path, name
                )
            return None
        if name == "content":
            return ContentNeighboursSource(recall.covisit_neighbours, recall.covisit_recent_items)
        return EmbeddingSource(neighbours=recall.covisit_neighbours)
    raise ReelhouseError(f"unknown recall source {name!r}; known: {list(SOURCES)}")


def make_sources(
    spark: SparkSession | None, config: ReelhouseConfig, interactions: Interactions, as_of_s: float | None
) -> list[RecallSource]:
    """The sources with a positive quota that these interactions can feed, unfitted, in quota order.

    ``spark`` is only needed when ALS has a quota; ``as_of_s`` is where the decayed sources
    measure age from (None: the latest interaction they are fitted on).
    """
    recall = config.recall
    unknown = sorted(set(recall.quotas) - set(SOURCES))
    if unknown:
        raise ReelhouseError(f"recall.quotas names unknown sources {unknown}; known: {list(SOURCES)}")
    sources = (make_source(spark, recall, name, interactions, as_of_s) for name, q in recall.quotas.items() if q > 0)
    return [source for source in sources if source is not None]


def _silver_window(
    spark: SparkSession, lake: Lake, config: ReelhouseConfig, as_of: dt.datetime, version: int
) -> DataFrame:
    from pyspark.sql import functions as F

    # Read by the events' own time (silver's partitions), widened by the clock skew the contract
    # accepts; interactions_from_events then places each event at min(event time, received).
    start = as_of - dt.timedelta(days=config.recall.lookback_days)
    end = as_of + dt.timedelta(seconds=config.ingest.max_clock_skew_s)
    return (
        lake.read(spark, SILVER_EVENTS.name, version=version)
        .where((F.col("event_hour") >= hour_partition(start)) & (F.col("event_hour") <= hour_partition(end)))
        .where(
            (F.col("event_time") >= F.lit(start).cast("timestamp"))
            & (F.col("event_time") < F.lit(end).cast("timestamp"))
        )
        .select("user_id", "video_id", "event_type", "event_time", "received_at", "watch_ms", "video_duration_ms")
    )


def build_candidates(spark: SparkSession, config: ReelhouseConfig, as_of: dt.datetime) -> CandidatesResult:
    """Fit the recall sources on the lookback before ``as_of`` and replace both recall tables."""
    if as_of.tzinfo is None:
        raise ReelhouseError(f"as_of {as_of} must be timezone-aware (UTC), e.g. 2026-11-22T00:00:00+00:00")
    recall = config.recall
    lake = Lake(config.lake)
    silver_version = lake.version(SILVER_EVENTS.name, spark)
    result = CandidatesResult(as_of=as_of.isoformat(), silver_version=silver_version)
    items = None
    if lake.exists(DIM_VIDEOS.name, spark):
        items = lake.read_arrow(spark, DIM_VIDEOS.name, columns=["video_id", "topic", "upload_time"])
    vectors = None
    if recall.embeddings_path:
        vectors = read_item_vectors(
            recall.embeddings_path,
            recall.embeddings_item_col,
            recall.embeddings_vector_col,
            dict(config.lake.storage_options),
        )
    events = _silver_window(spark, lake, config, as_of, silver_version)
    interactions = interactions_from_events(events, recall, as_of, items=items, vectors=vectors)
    result.users, result.items, result.pairs = interactions.n_users, interactions.n_items, len(interactions.weight)

    as_of_s = as_of.timestamp()
    # Settings chosen on the lookback's latest pairs (a temporal holdout: tomorrow is the test).
    tuned, tuning = tune_recall(
        recall,
        lambda candidate, name: make_source(spark, candidate, name, interactions, None),
        interactions,
        temporal=True,
        seed=recall.seed,
    )
    result.tuning = tuning.chosen
    config = config.model_copy(update={"recall": tuned})
    recall = tuned
    sources = make_sources(spark, config, interactions, as_of_s)
    for source in sources:
        log.info("recall: fitting %s on %d pairs", source.name, result.pairs)
        source.fit(interactions)
    result.sources = [s.name for s in sources]
    popular = next((s for s in sources if isinstance(s, PopularitySource)), None)
    if popular is None:  # the cold-start list is written whatever the quotas say
        popular = PopularitySource(recall.popularity_half_life_h, as_of_s).fit(interactions)

    stamp = pa.scalar(as_of, pa.timestamp("us", tz="UTC"))
    metadata = {"reelhouse.as_of": as_of.isoformat(), "reelhouse.silver_version": str(silver_version)}
    candidates_spec, neighbours_spec = candidates_table(recall), neighbours_table(recall)
    new_items = _new_item_codes(interactions, items, as_of, recall.new_video_hours)
    seen = interactions.seen()
    batches: list[pa.Table] = []
    # Users in batches (the sources' answers of one batch at a time); all rows are written in one commit.
    for batch_number, start in enumerate(range(0, interactions.n_users, USER_BATCH)):
        users = np.arange(start, min(interactions.n_users, start + USER_BATCH))
        answers = {s.name: s.recommend(users, FETCH_FACTOR * recall.quotas[s.name], seen) for s in sources}
        blended = blend(
            answers,
            recall.quotas,
            recall.exploration_slots,
            new_items,
            (recall.seed, batch_number),
            seen=seen,
            users=users,
        )
        for name, count in blended.counts().items():
            result.candidates[name] = result.candidates.get(name, 0) + count
        table = _candidate_rows(
            candidates_spec,
            stamp,
            interactions.user_ids[users[blended.row]],
            interactions.item_ids[blended.item],
            blended.source,
            blended.source_rank,
            blended.score,
            blended.position,
        )
        batches.append(table)
        log.info("recall: %d of %d users blended", users[-1] + 1, interactions.n_users)

    top_items, top_scores = popular.top(sum(q for q in recall.quotas.values() if q > 0))
    top = np.flatnonzero(top_items >= 0)
    cold = _candidate_rows(
        candidates_spec,
        stamp,
        np.full(len(top), ANY_USER, dtype=object),
        interactions.item_ids[top_items[top]],
        np.full(len(top), popular.name, dtype=object),
        top,
        top_scores[top],
        top,
    )
    batches.append(cold)
    candidates = pa.concat_tables(batches)
    commit = lake.write_arrow(spark, candidates, candidates_spec, mode="overwrite", metadata=metadata)
    result.rows[candidates_spec.name], result.versions[candidates_spec.name] = candidates.num_rows, commit.version

    neighbours = _neighbour_rows(neighbours_spec, stamp, interactions, sources)
    commit = lake.write_arrow(spark, neighbours, neighbours_spec, mode="overwrite", metadata=metadata)
    result.rows[neighbours_spec.name], result.versions[neighbours_spec.name] = neighbours.num_rows, commit.version
    log.info("recall as of %s from silver v%d: %s", as_of, silver_version, result.to_json())
    return result


def _new_item_codes(interactions: Interactions, items: pa.Table | None, as_of: dt.datetime, hours: float) -> np.ndarray:
    """Codes of the videos exploration draws from (uploaded within ``hours`` before ``as_of``)."""
    if items is None:
        return np.zeros(0, dtype=np.int64)
    fresh = pd.Index(interactions.item_ids).get_indexer(pd.Index(new_videos(items, as_of, hours)).unique())
    return np.sort(fresh[fresh >= 0]).astype(np.int64)


def _candidate_rows(
    spec: TableSpec,
    stamp: pa.Scalar,
    user_ids: np.ndarray,
    video_ids: np.ndarray,
    source: np.ndarray,
    source_rank: np.ndarray,
    score: np.ndarray,
    position: np.ndarray,
) -> pa.Table:
    columns = {
        "user_id": pa.array(user_ids, pa.string()),
        "video_id": pa.array(video_ids, pa.string()),
        "source": pa.array(source, pa.string()),
        "source_rank": pa.array(source_rank, pa.int32()),
        "score": pa.array(score, pa.float64(), from_pandas=True),  # NaN (exploration) -> null
        "position": pa.array(position, pa.int32()),
        "as_of": pa.repeat(stamp, len(user_ids)),
    }
    return pa.table(columns, schema=spec.schema)


def _neighbour_rows(
    spec: TableSpec, stamp: pa.Scalar, interactions: Interactions, sources: list[RecallSource]
) -> pa.Table:
    tables = [spec.schema.empty_table()]
    for source in sources:
        if not isinstance(source, (CovisitationSource, EmbeddingSource)):
            continue
        items, scores = source.neighbours()
        video, rank = np.nonzero(items >= 0)
        columns = {
            "video_id": pa.array(interactions.item_ids[video], pa.string()),
            "neighbour_id": pa.array(interactions.item_ids[items[video, rank]], pa.string()),
            "source": pa.array(np.full(len(video), source.name, dtype=object), pa.string()),
            "rank": pa.array(rank, pa.int32()),
            "score": pa.array(scores[video, rank], pa.float64()),
            "as_of": pa.repeat(stamp, len(video)),
        }
        tables.append(pa.table(columns, schema=spec.schema))
    return pa.concat_tables(tables)
