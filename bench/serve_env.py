"""A benchmark-sized environment for the feed service: everything it reads, at catalogue scale.

The feed service's integration tests build their (small) environment with the functions in
``tests/integration/serving/conftest.py``. The ranker part is reused from there as it is
(:func:`synthetic_training_set` and :func:`train_registered_rankers`: a real LightGBM ranker
trained by the project's trainer, registered and made ``champion``), so tests and benchmark
serve the same kind of model. The tables and online rows are built here instead, vectorised:
the tests' row-by-row builders would take minutes and gigabytes at 20k users x 300 candidates.

Written under ``root`` (the config points every location there):

* ``dim_videos`` / ``dim_users`` (Delta);
* ``user_candidates``: per user ``candidates_per_user`` distinct older videos in blend order over
  four sources (Zipf-popular videos are more likely to be anyone's candidate), plus two exploration
  picks among the new uploads, and the ``'*'`` trending list;
* ``item_neighbours``: per video ``neighbours_per_video`` videos of its topic;
* the online store (SQLite, or the Redis server at ``redis_url``): ``video_features``, ``user_features`` and ``user_topic_features``
  rows of every registry feature for every video, user and (user, topic);
* the MLflow SQLite registry with both rankers; LightGBM holds ``champion``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:  # `python bench/bench_serve.py` puts only bench/ on the path
    sys.path.insert(0, str(PROJECT_DIR))

from bench.serving_data import (  # noqa: E402
    AGE_GROUPS,
    COUNTRIES,
    TABLE_SOURCES,
    TOKEN,
    serving_config,
    synthetic_training_set,
    train_registered_rankers,
)
from reelhouse.config import ReelhouseConfig  # noqa: E402
from reelhouse.features.registry import KEY_SEPARATOR, feature_names  # noqa: E402
from reelhouse.features.views import features_view  # noqa: E402
from reelhouse.lake import Lake, TableSpec  # noqa: E402
from reelhouse.online.store import FeatureRow, OnlineStore, feature_version, open_online_store  # noqa: E402
from reelhouse.recall.tables import ANY_USER, candidates_table, neighbours_table  # noqa: E402
from reelhouse.silver.tables import DIM_USERS, DIM_VIDEOS  # noqa: E402

log = logging.getLogger("bench.serve.env")

UTC = pa.timestamp("us", tz="UTC")
WRITE_CHUNK = 50_000  # online rows per store write


@dataclass
class BenchEnvironment:
    config: ReelhouseConfig
    users: list[str]  # users with a candidate list, in Zipf rank order (users[0] requests the most)
    videos: int
    candidates_per_user: int  # rows per user in user_candidates (exploration picks included)
    versions: dict[str, int]
    build_s: dict[str, float]


def user_id(i: int) -> str:
    return f"u{i:06d}"


def video_id(i: int) -> str:
    return f"v{i:07d}"


def _commit(spark: object, lake: Lake, spec: TableSpec, table: pa.Table) -> None:
    lake.write_arrow(spark, table, spec, mode="overwrite")


def _timestamps(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[us]"), UTC)


def write_tables(
    spark: object,
    lake: Lake,
    config: ReelhouseConfig,
    *,
    users: int,
    videos: int,
    topics: int,
    creators: int,
    new_videos: int,
    candidates_per_user: int,
    neighbours_per_video: int,
    trending: int,
    rng: np.random.Generator,
    now: dt.datetime,
) -> None:
    """dim_videos, dim_users, user_candidates and item_neighbours, vectorised."""
    now64 = np.datetime64(now.replace(tzinfo=None), "us")
    video_ids = pa.array([video_id(i) for i in range(videos)])
    topic_of = rng.integers(0, topics, size=videos)
    creator_of = rng.integers(0, creators, size=videos)
    age_h = rng.exponential(24 * 20, size=videos) + 49  # older than recall.new_video_hours ...
    age_h[videos - new_videos :] = rng.uniform(1, 40, size=new_videos)  # ... but the newest uploads
    upload = now64 - (age_h * 3_600_000_000).astype("timedelta64[us]")
    stamp = _timestamps(np.full(videos, now64))
    _commit(spark, lake, DIM_VIDEOS, pa.table({
        "video_id": video_ids,
        "creator_id": pa.array([f"c{c:05d}" for c in creator_of.tolist()]),
        "topic": pa.array([f"t{t:02d}" for t in topic_of.tolist()]),
        "duration_ms": pa.array(np.clip(rng.lognormal(np.log(25_000), 0.8, videos), 3_000, 600_000).astype(np.int64)),
        "upload_time": _timestamps(upload),
        "updated_at": stamp,
    }))  # fmt: skip
    _commit(spark, lake, DIM_USERS, pa.table({
        "user_id": pa.array([user_id(i) for i in range(users)]),
        "country": pa.array(np.asarray(COUNTRIES)[rng.integers(0, len(COUNTRIES), users)]),
        "os": pa.array(np.asarray(["android", "ios", "web", "other"])[rng.integers(0, 4, users)]),
        "app_version": pa.array(["33.2.0"] * users),
        "age_group": pa.array(np.asarray(AGE_GROUPS)[rng.integers(0, len(AGE_GROUPS), users)]),
        "signup_time": _timestamps(np.full(users, now64 - np.timedelta64(30, "D"))),
        "updated_at": _timestamps(np.full(users, now64)),
    }))  # fmt: skip

    # Candidates: distinct older videos per user, without a users x videos matrix: a per-user
    # stride through a popularity-ranked list. A stride below old / picks repeats no rank within
    # `picks` steps (the period old / gcd(stride, old) is at least old / stride); starts near the
    # head make popular videos everyone's candidates more often.
    old = videos - new_videos
    picks = candidates_per_user - 2
    if picks * 2 > old or new_videos < 2:
        raise ValueError(f"{picks} candidates per user need {2 * picks} older videos and 2 new ones")
    order = rng.permutation(old)  # rank -> video
    start = np.minimum((rng.pareto(1.2, users) * 50).astype(np.int64), old - 1)
    stride = rng.integers(1, old // picks, users)
    chosen = order[(start[:, None] + stride[:, None] * np.arange(picks)[None, :]) % old]
    explore = old + (rng.integers(0, new_videos, users)[:, None] + np.arange(2)[None, :]) % new_videos
    listed = np.concatenate([chosen, explore], axis=1)
    per_user = listed.shape[1]
    position = np.tile(np.arange(per_user, dtype=np.int32), users)
    source = np.where(position < picks, position % len(TABLE_SOURCES), len(TABLE_SOURCES))
    sources = pa.array([*TABLE_SOURCES, "exploration"]).take(pa.array(source))
    score = np.where(position < picks, 1.0 / (1.0 + position), np.nan)
    trending_videos = order[:trending]
    cand = pa.table({
        "user_id": pa.array([user_id(i) for i in range(users)]).take(pa.array(np.repeat(np.arange(users), per_user))),
        "video_id": video_ids.take(pa.array(listed.reshape(-1))),
        "source": sources,
        "source_rank": pa.array((position // len(TABLE_SOURCES)).astype(np.int32)),
        "score": pa.array(score, mask=np.isnan(score)),
        "position": pa.array(position),
        "as_of": _timestamps(np.full(users * per_user, now64)),
    })  # fmt: skip
    trend = pa.table({
        "user_id": pa.array([ANY_USER] * trending),
        "video_id": video_ids.take(pa.array(trending_videos)),
        "source": pa.array(["popularity"] * trending),
        "source_rank": pa.array(np.arange(trending, dtype=np.int32)),
        "score": pa.array(1000.0 / (1.0 + np.arange(trending))),
        "position": pa.array(np.arange(trending, dtype=np.int32)),
        "as_of": _timestamps(np.full(trending, now64)),
    })  # fmt: skip
    spec = candidates_table(config.recall)
    _commit(spark, lake, spec, pa.concat_tables([cand.cast(spec.schema), trend.cast(spec.schema)]))

    # Neighbours: the next videos of the same topic (videos sorted by topic, wrapping within it).
    by_topic = np.argsort(topic_of, kind="stable")
    bounds = np.searchsorted(topic_of[by_topic], np.arange(topics + 1))
    group_start = bounds[topic_of[by_topic]]
    group_size = bounds[topic_of[by_topic] + 1] - group_start
    offset = np.arange(videos) - group_start
    k = neighbours_per_video
    neighbour_pos = group_start[:, None] + (offset[:, None] + 1 + np.arange(k)[None, :]) % group_size[:, None]
    neighbours = by_topic[neighbour_pos]
    keep = (neighbours != by_topic[:, None]).reshape(-1)
    owner = np.repeat(by_topic, k)[keep]
    rank = np.tile(np.arange(k, dtype=np.int32), videos)[keep]
    spec = neighbours_table(config.recall)
    _commit(spark, lake, spec, pa.table({
        "video_id": video_ids.take(pa.array(owner)),
        "neighbour_id": video_ids.take(pa.array(neighbours.reshape(-1)[keep])),
        "source": pa.array(["covisit"] * len(owner)),
        "rank": pa.array(rank),
        "score": pa.array(1.0 / (1.0 + rank)),
        "as_of": _timestamps(np.full(len(owner), now64)),
    }))  # fmt: skip


def _feature_columns(entity: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible values of every registry feature of ``entity``, as the tests' ``feature_values`` draws them."""
    columns: dict[str, np.ndarray] = {}
    for name in feature_names(entity):
        if any(word in name for word in ("rate", "ratio", "affinity")):
            columns[name] = rng.uniform(0, 1, n)
        elif name.endswith(("_impressions_1h", "_plays_1h", "_events_1d", "_plays_1d", "_plays_7d", "_plays_28d")):
            columns[name] = rng.poisson(20, n)
        else:
            columns[name] = rng.gamma(2.0, 10.0, n)
    return columns


def write_online_features(
    store: OnlineStore, users: int, videos: int, topics: int, rng: np.random.Generator, now: dt.datetime
) -> int:
    """Rows of every registry feature for every video, user and (user, topic); returns how many."""
    feature_time = now.replace(minute=0, second=0, microsecond=0)
    version = feature_version(feature_time)
    written = 0
    entities = (
        ("video", [video_id(i) for i in range(videos)]),
        ("user", [user_id(i) for i in range(users)]),
        ("user_topic", [f"{user_id(u)}{KEY_SEPARATOR}t{t:02d}" for u in range(users) for t in range(topics)]),
    )
    for entity, keys in entities:
        for first in range(0, len(keys), WRITE_CHUNK):
            chunk = keys[first : first + WRITE_CHUNK]
            columns = _feature_columns(entity, len(chunk), rng)
            names = list(columns)
            values = zip(*(columns[name].tolist() for name in names))
            rows = [FeatureRow(key, dict(zip(names, row)), feature_time, version) for key, row in zip(chunk, values)]
            store.write(features_view(entity), rows)
            written += len(rows)
    return written


def build_bench_environment(
    root: Path,
    base: ReelhouseConfig,
    *,
    users: int = 20_000,
    videos: int = 50_000,
    topics: int = 24,
    creators: int = 2_000,
    new_videos: int = 500,
    candidates_per_user: int = 320,
    neighbours_per_video: int = 20,
    trending: int = 1_000,
    training_rows: int = 40_000,
    seed: int = 7,
    serving: dict | None = None,
    redis_url: str | None = None,
) -> BenchEnvironment:
    """Everything the feed service reads (module docstring), under ``root``; ``base`` gives Kafka and the rest."""
    rng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.UTC)
    config = serving_config(
        base.model_copy(update={"data_dir": root}),
        lake={"root": str(root / "lake")},
        mlflow={"tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}", "artifact_root": str(root / "mlflow" / "artifacts")},
        online_store=(
            {"type": "sqlite", "path": root / "online" / "features.db"} if redis_url is None
            else {"type": "redis", "redis_url": redis_url, "key_prefix": "bench:"}
        ),
        training={
            "max_fit_rows": max(training_rows, 1_000),
            # The project's LightGBM settings, on one thread (the service scores on one thread too).
            "lgbm_params": {**base.training.lgbm_params, "n_jobs": 1},
        },
        serving={"token": TOKEN, **(serving or {})},
        experiments=[],
    )  # fmt: skip
    timings: dict[str, float] = {}
    started = time.monotonic()
    from reelhouse.session import spark_session

    # The tables are written by delta-spark, like every lake table; the service reads them with delta-rs.
    spark = spark_session(config, "bench-serve-env")
    try:
        write_tables(
            spark, Lake(config.lake), config, users=users, videos=videos, topics=topics, creators=creators,
            new_videos=new_videos, candidates_per_user=candidates_per_user, neighbours_per_video=neighbours_per_video,
            trending=trending, rng=rng, now=now,
        )  # fmt: skip
    finally:
        spark.stop()
    timings["tables_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    store = open_online_store(config.online_store)
    try:
        rows = write_online_features(store, users, videos, topics, rng, now)
    finally:
        store.close()
    timings["online_rows"] = rows
    timings["online_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    user_ids = [user_id(i) for i in range(users)]
    topic_names = [f"t{t:02d}" for t in range(topics)]
    versions = train_registered_rankers(config, synthetic_training_set(training_rows, user_ids, topic_names, rng))
    timings["rankers_s"] = round(time.monotonic() - started, 1)
    log.info("bench environment under %s: %s", root, timings)
    return BenchEnvironment(
        config=config, users=user_ids, videos=videos, candidates_per_user=candidates_per_user, versions=versions,
        build_s=timings,
    )  # fmt: skip
