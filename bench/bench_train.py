"""Training benchmark: a training set from >= 10M impressions with point-in-time feature joins, then both rankers.

Inputs are generated straight into a scratch lake (no broker, no bronze), with a latent model so
the rankers have something real to learn:

* users have a taste over ``--topics`` topics (Dirichlet), videos one topic and a quality; a page
  of 8 impressions shares a ``request_id``; each impression is followed by a ``play`` (watch ratio
  rising with taste x topic and quality) or a ``skip``, and plays by likes and shares;
* gold feature tables hold one row per entity every ``--feature-every-h`` hours over the span
  (the cadence of a batch layer), with values consistent with the latent model plus noise:
  video completion / like rates follow quality, ``user_topic_affinity_*`` follows taste,
  counts follow popularity. Generating gold this way (instead of running ``build_features``
  for every feature time, which ``make bench-features`` measures) keeps the run in minutes.

Measured: ``build_training_set`` over the whole span (reading silver, attributing outcomes,
three point-in-time joins, the split, writing the Delta table): ``training_set_rows_per_s`` =
examples written / seconds; then ``train_rankers`` on that set (``lr_fit_s``, ``lgbm_fit_s``,
test AUCs), logged to a scratch MLflow store. Last line: JSON.

    make bench-train                                   # 10M impressions
    python bench/bench_train.py --impressions 1000000  # a quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import NETWORK_WEIGHTS, NETWORKS, _prefixed, _utc, _weights, bench_config  # noqa: E402

from reelhouse.config import ReelhouseConfig, load_config  # noqa: E402
from reelhouse.features.gold import feature_table  # noqa: E402
from reelhouse.features.registry import ENTITY_KEYS  # noqa: E402
from reelhouse.jobs import configure_logging  # noqa: E402
from reelhouse.lake import Lake  # noqa: E402
from reelhouse.lake.partitions import hour_partition  # noqa: E402
from reelhouse.silver.tables import SILVER_EVENTS  # noqa: E402
from reelhouse.simulator.catalogue import (  # noqa: E402
    AGE_GROUP_WEIGHTS,
    AGE_GROUPS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    OS_NAMES,
    OS_WEIGHTS,
    topic_names,
)

log = logging.getLogger("bench.train")

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
PAGE = 8
DEFAULT_START = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class World:
    """The latent model behind the generated events and features."""

    taste: np.ndarray  # users x topics, rows sum to 1
    bias: np.ndarray  # per user engagement bias
    user_os: np.ndarray
    user_country: np.ndarray
    user_age_group: np.ndarray
    video_topic: np.ndarray  # topic index per video
    quality: np.ndarray  # 0..1 per video
    duration_ms: np.ndarray
    upload_ms: np.ndarray
    popularity_cdf: np.ndarray
    popularity: np.ndarray  # share of impressions per video
    topics: np.ndarray  # topic names

    @classmethod
    def draw(cls, rng: np.random.Generator, users: int, videos: int, topics: int, start_ms: int) -> World:
        def pick(names: tuple[str, ...], weights: tuple[float, ...], count: int) -> np.ndarray:
            return np.asarray(names, dtype=object)[rng.choice(len(names), size=count, p=_weights(weights))]

        ranks = rng.permutation(videos)
        popularity = 1.0 / np.power(ranks + 1.0, 1.0)
        popularity /= popularity.sum()
        return cls(
            taste=rng.dirichlet(np.full(topics, 0.3), size=users),
            bias=rng.normal(0.0, 0.5, size=users),
            user_os=pick(OS_NAMES, OS_WEIGHTS, users),
            user_country=pick(COUNTRIES, COUNTRY_WEIGHTS, users),
            user_age_group=pick(AGE_GROUPS, AGE_GROUP_WEIGHTS, users),
            video_topic=rng.integers(0, topics, size=videos),
            quality=rng.beta(2.0, 2.0, size=videos),
            duration_ms=np.clip(rng.lognormal(np.log(25_000), 0.8, size=videos), 3_000, 600_000).astype(np.int64),
            upload_ms=start_ms - rng.integers(0, 60 * DAY_MS, size=videos),
            popularity_cdf=np.cumsum(popularity),
            popularity=popularity,
            topics=np.asarray(topic_names(topics), dtype=object),
        )

    def engagement(self, user: np.ndarray, video: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """P(a play) of a user shown a video."""
        affinity = self.taste[user, self.video_topic[video]] * self.taste.shape[1]
        score = 1.2 * np.log1p(affinity) + 2.5 * (self.quality[video] - 0.5) + self.bias[user] - 0.6 + noise
        return 1.0 / (1.0 + np.exp(-score))


def events_chunk(
    rng: np.random.Generator, world: World, first: int, pages: int, start_ms: int, end_ms: int
) -> pa.Table:
    """``pages`` feed pages of ``PAGE`` impressions with their outcomes, times in ``[start_ms, end_ms)``."""
    n_users = len(world.bias)
    page_user = rng.integers(0, n_users, size=pages)
    page_ms = np.sort(rng.integers(start_ms, end_ms - 60_000, size=pages))
    n = pages * PAGE
    user = np.repeat(page_user, PAGE)
    video = np.minimum(np.searchsorted(world.popularity_cdf, rng.random(n), side="right"), len(world.quality) - 1)
    position = np.tile(np.arange(PAGE, dtype=np.int32), pages)
    shown_ms = np.repeat(page_ms, PAGE) + position.astype(np.int64) * 4_000
    p = world.engagement(user, video, rng.normal(0.0, 0.3, size=n))
    played = rng.random(n) < p
    ratio = np.where(played, np.clip(rng.beta(2.0, 2.0, size=n) * 0.6 + p * 0.5, 0.05, 1.0), rng.uniform(0, 0.15, n))
    liked = played & (rng.random(n) < 0.25 * p)
    shared = played & (rng.random(n) < 0.06 * p)
    request = np.repeat(first + np.arange(pages), PAGE)

    # Rows: every impression, its play or skip, then likes and shares (a few seconds later).
    idx = np.concatenate([np.arange(n), np.arange(n), np.flatnonzero(liked), np.flatnonzero(shared)])
    kind = np.concatenate([
        np.zeros(n, np.int8), np.where(played, 1, 6).astype(np.int8),
        np.full(int(liked.sum()), 2, np.int8), np.full(int(shared.sum()), 3, np.int8),
    ])  # fmt: skip
    delay = np.concatenate([
        np.zeros(n, np.int64), rng.integers(1_000, 3_000, n),
        rng.integers(3_000, 20_000, int(liked.sum())), rng.integers(3_000, 30_000, int(shared.sum())),
    ])  # fmt: skip
    event_ms = shown_ms[idx] + delay
    rows = len(idx)
    u, v = user[idx], video[idx]
    duration = world.duration_ms[v]
    watch = (duration * ratio[idx]).astype(np.int64)
    with_watch = (kind == 1) | (kind == 6)
    hour_base = int(event_ms.min()) // HOUR_MS
    hours = np.arange(hour_base, int(event_ms.max()) // HOUR_MS + 1)
    hour_text = pa.array([hour_partition(dt.datetime.fromtimestamp(h * 3600, dt.UTC)) for h in hours])
    user_id = _prefixed("u", u)
    session_start = (event_ms // (30 * 60_000)) * (30 * 60_000)
    names = np.asarray(("impression", "play", "like", "share", "comment", "follow", "skip"), dtype=object)
    return pa.table(
        {
            "event_id": _prefixed("e", first * PAGE * 3 + np.arange(rows)),
            "event_type": pa.array(names[kind]),
            "schema_version": pa.array(np.ones(rows, dtype=np.int32)),
            "user_id": user_id,
            "video_id": _prefixed("v", v),
            "event_time": _utc(event_ms),
            "session_id": _prefixed("s", u.astype(np.int64) * 100_000 + session_start // 1_800_000 % 100_000),
            "request_id": _prefixed("r", request[idx]),
            "device_os": pa.array(world.user_os[u]),
            "device_app_version": pa.array(np.full(rows, "5.0.0", dtype=object)),
            "device_country": pa.array(world.user_country[u]),
            "device_network": pa.array(
                np.asarray(NETWORKS, dtype=object)[rng.choice(len(NETWORKS), size=rows, p=_weights(NETWORK_WEIGHTS))]
            ),
            "watch_ms": pa.array(watch, mask=~with_watch),
            "video_duration_ms": pa.array(duration, mask=kind != 1),
            "position": pa.array(position[idx], mask=kind != 0),
            "variant": pa.nulls(rows, pa.string()),
            "propensity": pa.nulls(rows, pa.float64()),
            "received_at": _utc(event_ms + 500),
            "session_key": pc.binary_join_element_wise(user_id, pa.array(session_start).cast(pa.string()), ":"),
            "session_start": _utc(session_start),
            "known_user": pa.array(np.ones(rows, dtype=bool)),
            "known_video": pa.array(np.ones(rows, dtype=bool)),
            "user_country": pa.array(world.user_country[u]),
            "user_age_group": pa.array(world.user_age_group[u]),
            "creator_id": _prefixed("c", v // 10),
            "topic": pa.array(world.topics[world.video_topic[v]]),
            "upload_time": _utc(world.upload_ms[v]),
            "event_date": pa.array((event_ms // DAY_MS).astype(np.int32), type=pa.date32()),
            "event_hour": hour_text.take(event_ms // HOUR_MS - hour_base),
        }
    )


def gold_tables(
    rng: np.random.Generator, world: World, feature_ms: int, impressions_per_hour: float
) -> dict[str, pa.Table]:
    """Every entity's feature rows as of ``feature_ms``, consistent with the latent model."""
    n_users, n_videos = len(world.bias), len(world.quality)
    hour = hour_partition(dt.datetime.fromtimestamp(feature_ms / 1000, dt.UTC))
    tables: dict[str, pa.Table] = {}
    for entity in ENTITY_KEYS:
        spec = feature_table(entity)
        if entity == "video":
            keys = {"video_id": _prefixed("v", np.arange(n_videos))}
            n = n_videos
        elif entity == "user":
            keys = {"user_id": _prefixed("u", np.arange(n_users))}
            n = n_users
        else:
            # Each user's three favourite topics.
            top = np.argsort(-world.taste, axis=1)[:, :3]
            users = np.repeat(np.arange(n_users), 3)
            topic = top.ravel()
            keys = {"user_id": _prefixed("u", users), "topic": pa.array(world.topics[topic])}
            n = len(users)
        columns: dict[str, pa.Array] = dict(keys)
        for field in spec.schema:
            name = field.name
            if name in columns or name in ("feature_time", "feature_hour"):
                continue
            window_h = {"1h": 1, "1d": 24, "7d": 168, "28d": 672}.get(name.rsplit("_", 1)[-1], 24)
            if entity == "video":
                expected = world.popularity * impressions_per_hour * window_h
                if "rate" in name or "ratio" in name:
                    base = world.quality * (0.3 if "like" in name or "share" in name or "comment" in name else 0.9)
                    values = np.clip(base + rng.normal(0, 0.05, n), 0, 1)
                elif name == "video_age_s":
                    values = (feature_ms - world.upload_ms) // 1000
                else:
                    values = rng.poisson(expected * (0.5 if "plays" in name else 1.0))
            elif entity == "user":
                if "rate" in name or "ratio" in name:
                    values = np.clip(0.4 + 0.2 * world.bias + rng.normal(0, 0.05, n), 0, 1)
                else:
                    values = rng.poisson(np.full(n, 2.0 * window_h))
            else:
                affinity = world.taste[users, topic]
                if "affinity" in name:
                    values = np.clip(affinity + rng.normal(0, 0.03, n), 0, 1)
                else:
                    values = rng.poisson(affinity * window_h * 2.0) * (1.0 if "plays" in name else 0.7)
            columns[name] = pa.array(values).cast(field.type)
        columns["feature_time"] = pa.array(np.full(n, feature_ms * 1000), type=pa.timestamp("us", tz="UTC"))
        columns["feature_hour"] = pa.array(np.full(n, hour, dtype=object), type=pa.string())
        tables[entity] = pa.table(columns).select(spec.schema.names).cast(spec.schema)
    return tables


@dataclass
class Generated:
    impressions: int
    silver_rows: int
    gold_rows: int
    seconds: float


def generate(spark: object, config: ReelhouseConfig, impressions: int, hours: int, every_h: int, chunk_pages: int,
             seed: int, users: int, videos: int, topics: int, start: dt.datetime) -> Generated:  # fmt: skip
    """Silver events over ``hours`` from ``start`` and gold features every ``every_h`` hours."""
    started = time.monotonic()
    lake = Lake(config.lake)
    rng = np.random.default_rng(seed)
    start_ms = int(start.timestamp() * 1000)
    world = World.draw(rng, users, videos, topics, start_ms)
    pages = -(-impressions // PAGE)
    chunks = max(1, -(-pages // chunk_pages))
    bounds = np.linspace(start_ms, start_ms + hours * HOUR_MS, chunks + 1).astype(np.int64)
    silver_rows = done = 0
    for i in range(chunks):
        count = pages // chunks + (1 if i < pages % chunks else 0)
        table = events_chunk(rng, world, done, count, int(bounds[i]), int(bounds[i + 1]))
        lake.write_arrow(spark, table, SILVER_EVENTS)
        silver_rows += table.num_rows
        done += count
        log.info("silver chunk %d/%d: %d pages, %d rows", i + 1, chunks, count, table.num_rows)
    gold_rows = 0
    per_hour = done * PAGE / hours
    for h in range(0, hours, every_h):
        feature_ms = start_ms + h * HOUR_MS
        for entity, table in gold_tables(rng, world, feature_ms, per_hour).items():
            spec = feature_table(entity)
            lake.write_arrow(spark, table, spec)
            gold_rows += table.num_rows
    log.info("gold: %d rows at %d feature times", gold_rows, len(range(0, hours, every_h)))
    return Generated(done * PAGE, silver_rows, gold_rows, time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--hours", type=int, default=48, help="span of the impressions")
    parser.add_argument("--feature-every-h", type=int, default=6, help="hours between gold feature times")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--videos", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=24)
    parser.add_argument("--chunk-pages", type=int, default=250_000, help="pages generated and committed at a time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--driver-memory", default=None, help="override spark.driver.memory of the config")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", default=None, help="scratch directory (default: <data_dir>/bench/train)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lake and MLflow store afterwards")
    args = parser.parse_args()
    configure_logging()

    base = load_config(args.config)
    work = Path(args.work or Path(base.data_dir) / "bench" / "train").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = bench_config(base, work, args.driver_memory, args.spark_conf)
    config = config.model_copy(
        update={
            "mlflow": config.mlflow.model_copy(
                update={"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "artifact_root": str(work / "artifacts")}
            )
        }
    )
    spark = None
    try:
        from reelhouse.session import spark_session
        from reelhouse.training.dataset import build_training_set
        from reelhouse.training.ranker import train_from_lake

        spark = spark_session(config, "bench-train")
        generated = generate(
            spark, config, args.impressions, args.hours, args.feature_every_h, args.chunk_pages, args.seed,
            args.users, args.videos, args.topics, DEFAULT_START,
        )  # fmt: skip
        log.info(
            "generated %d impressions (%d silver rows, %d gold rows) in %.1f s",
            generated.impressions,
            generated.silver_rows,
            generated.gold_rows,
            generated.seconds,
        )

        started = time.monotonic()
        built = build_training_set(spark, config, DEFAULT_START, DEFAULT_START + dt.timedelta(hours=args.hours))
        build_s = time.monotonic() - started
        examples = sum(built.rows.values())
        log.info("training set: %d rows in %.1f s", examples, build_s)
        spark.stop()
        spark = None

        trained = train_from_lake(config)
        models = trained.models
        report = {
            "benchmark": "train",
            "impressions": generated.impressions,
            "training_set_rows": examples,
            "training_set_rows_per_s": round(examples / build_s),
            "training_set_build_s": round(build_s, 2),
            "lgbm_fit_s": round(models["lightgbm"].fit_s, 2),
            "lr_fit_s": round(models["logistic_regression"].fit_s, 2),
            "lgbm_test_auc": round(models["lightgbm"].test["auc"], 4),
            "lr_test_auc": round(models["logistic_regression"].test["auc"], 4),
            "lgbm_test_ndcg_at_10": round(models["lightgbm"].test["ndcg_at_10"], 4),
            "popularity_test_ndcg_at_10": round(trained.popularity_test["ndcg_at_10"], 4),
            "fit_rows": trained.fit_rows,
            "rows_per_split": built.rows,
            "silver_rows": generated.silver_rows,
            "gold_rows": generated.gold_rows,
            "generate_s": round(generated.seconds, 2),
            "spark_master": config.spark.master,
            "machine_cores": os.cpu_count(),
        }
    finally:
        if spark is not None:
            spark.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
