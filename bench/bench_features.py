"""Batch feature benchmark: gold's build_features over >= 10M silver events on this machine's Spark.

Silver is generated directly into a scratch lake (no broker, no bronze): numpy draws events in
chunks of ``--chunk`` rows (users uniform over ``simulator.users``, videos Zipf over
``simulator.videos``, ``simulator.topics`` topics, realistic event-type shares, plays with watch
and duration), spread evenly over the 28 days before the feature time so every window (1h .. 28d)
has events; each chunk covers a contiguous stretch of time and is appended with
``Lake.write_arrow`` (delta-spark, one commit per chunk). That generation is timed apart.

Measured: one call of ``build_features(spark, config, as_of)`` (``--repeat`` calls; the median
counts), i.e. reading silver, computing every entity's features and replacing their partition in
the three feature tables. ``events_per_s`` = silver events inside the 28-day window / build seconds.
Last line: JSON.

    make bench-features                     # 10M events
    python bench/bench_features.py --events 2000000 --repeat 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.events.contract import EVENT_TYPES
from reelhouse.features.registry import WINDOWS
from reelhouse.jobs import configure_logging
from reelhouse.lake import Lake
from reelhouse.lake.partitions import hour_partition
from reelhouse.silver.tables import SILVER_EVENTS
from reelhouse.simulator.catalogue import (
    AGE_GROUP_WEIGHTS,
    AGE_GROUPS,
    APP_VERSION_WEIGHTS,
    APP_VERSIONS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    OS_NAMES,
    OS_WEIGHTS,
    topic_names,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("bench.features")

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SESSION_MS = 30 * 60_000
EVENT_TYPE_SHARES = {
    "impression": 0.50,
    "play": 0.30,
    "skip": 0.10,
    "like": 0.06,
    "share": 0.015,
    "comment": 0.015,
    "follow": 0.01,
}
NETWORKS = ("wifi", "cellular", "unknown", "offline")
NETWORK_WEIGHTS = (0.62, 0.34, 0.03, 0.01)
ZIPF_EXPONENT = 1.0
UNKNOWN_VIDEO_SHARE = 0.002
ORGANIC_SHARE = 0.15
DEFAULT_AS_OF = dt.datetime(2026, 11, 22, 0, 0, tzinfo=dt.UTC)


def _weights(values: tuple[float, ...] | list[float]) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    return p / p.sum()


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``prefix`` + decimal text of each number, built with Arrow kernels."""
    text = pa.array(numbers).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _utc(ms: np.ndarray) -> pa.Array:
    return pa.array(ms * 1000, type=pa.timestamp("us", tz="UTC"))


@dataclass(frozen=True)
class Population:
    """Per-user and per-video attributes the events copy (what silver joins from the dimensions)."""

    user_ids: pa.Array
    user_os: pa.Array
    user_app_version: pa.Array
    user_country: pa.Array
    user_age_group: pa.Array
    video_ids: pa.Array
    video_creator: pa.Array
    video_topic: pa.Array
    video_upload_ms: np.ndarray
    video_duration_ms: np.ndarray
    popularity_cdf: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, users: int, videos: int, topics: int, window_start_ms: int) -> Population:
        def pick(names: tuple[str, ...], weights: tuple[float, ...], count: int) -> pa.Array:
            return pa.array(np.asarray(names, dtype=object)[rng.choice(len(names), size=count, p=_weights(weights))])

        creators = max(1, videos // 10)
        topic_list = np.asarray(topic_names(topics), dtype=object)
        ranks = rng.permutation(videos)
        popularity = 1.0 / np.power(ranks + 1.0, ZIPF_EXPONENT)
        uploads = window_start_ms - rng.integers(0, 90 * DAY_MS, size=videos)
        durations = np.clip(rng.lognormal(np.log(25_000), 0.8, size=videos), 3_000, 600_000).astype(np.int64)
        return cls(
            user_ids=pa.array([f"u{i:06d}" for i in range(users)]),
            user_os=pick(OS_NAMES, OS_WEIGHTS, users),
            user_app_version=pick(APP_VERSIONS, APP_VERSION_WEIGHTS, users),
            user_country=pick(COUNTRIES, COUNTRY_WEIGHTS, users),
            user_age_group=pick(AGE_GROUPS, AGE_GROUP_WEIGHTS, users),
            video_ids=pa.array([f"v{i:07d}" for i in range(videos)]),
            video_creator=_prefixed("c", rng.integers(0, creators, size=videos)),
            video_topic=pa.array(topic_list[rng.integers(0, len(topic_list), size=videos)]),
            video_upload_ms=uploads,
            video_duration_ms=durations,
            popularity_cdf=np.cumsum(popularity) / popularity.sum(),
        )


def _event_types(rng: np.random.Generator, count: int) -> np.ndarray:
    names = list(EVENT_TYPE_SHARES)
    codes = rng.choice(len(names), size=count, p=_weights(list(EVENT_TYPE_SHARES.values())))
    return np.asarray([EVENT_TYPES.index(n) for n in names], dtype=np.int8)[codes]


def silver_chunk(
    rng: np.random.Generator, pop: Population, first_id: int, count: int, start_ms: int, end_ms: int
) -> pa.Table:
    """``count`` silver rows with event times in ``[start_ms, end_ms)``, in time order."""
    event_ms = np.sort(rng.integers(start_ms, end_ms, size=count))
    received_ms = event_ms + rng.exponential(800.0, size=count).astype(np.int64)
    user = rng.integers(0, len(pop.user_ids), size=count)
    video = np.searchsorted(pop.popularity_cdf, rng.random(count), side="right")
    video = np.minimum(video, len(pop.video_ids) - 1)
    known_video = rng.random(count) >= UNKNOWN_VIDEO_SHARE
    kind = _event_types(rng, count)
    is_play = kind == EVENT_TYPES.index("play")
    is_skip = kind == EVENT_TYPES.index("skip")
    is_impression = kind == EVENT_TYPES.index("impression")
    duration = pop.video_duration_ms[video]
    ratio = np.where(rng.random(count) < 0.35, 1.0, rng.beta(2.0, 2.5, size=count))
    skipped_after = rng.uniform(0.0, 0.25, size=count)
    watch = np.where(is_play, duration * ratio, duration * skipped_after).astype(np.int64)
    session_start = (event_ms // SESSION_MS) * SESSION_MS
    session_number = user * 1_000_000 + session_start // SESSION_MS % 1_000_000
    organic = rng.random(count) < ORGANIC_SHARE
    request = _prefixed("r", (first_id + np.arange(count)) // 10)
    hour_base = start_ms // HOUR_MS
    hours = np.arange(hour_base, (end_ms - 1) // HOUR_MS + 1)
    hour_text = pa.array([hour_partition(dt.datetime.fromtimestamp(h * 3600, dt.UTC)) for h in hours])
    user_id = pop.user_ids.take(user)
    video_id = pc.if_else(known_video, pop.video_ids.take(video), _prefixed("x", video))
    network = rng.choice(len(NETWORKS), size=count, p=_weights(NETWORK_WEIGHTS))
    missing = pa.nulls(count, pa.string())
    return pa.table(
        {
            "event_id": _prefixed("e", first_id + np.arange(count)),
            "event_type": pa.array(np.asarray(EVENT_TYPES, dtype=object)[kind]),
            "schema_version": pa.array(np.ones(count, dtype=np.int32)),
            "user_id": user_id,
            "video_id": video_id,
            "event_time": _utc(event_ms),
            "session_id": _prefixed("s", session_number),
            "request_id": pc.if_else(organic, pa.scalar(""), request),
            "device_os": pop.user_os.take(user),
            "device_app_version": pop.user_app_version.take(user),
            "device_country": pop.user_country.take(user),
            "device_network": pa.array(np.asarray(NETWORKS, dtype=object)[network]),
            "watch_ms": pa.array(watch, mask=~(is_play | is_skip)),
            "video_duration_ms": pa.array(duration, mask=~is_play),
            "position": pa.array(rng.integers(0, 10, size=count).astype(np.int32), mask=~is_impression),
            "variant": pa.nulls(count, pa.string()),
            "propensity": pa.nulls(count, pa.float64()),
            "received_at": _utc(received_ms),
            "session_key": pc.binary_join_element_wise(user_id, pa.array(session_start).cast(pa.string()), ":"),
            "session_start": _utc(session_start),
            "known_user": pa.array(np.ones(count, dtype=bool)),
            "known_video": pa.array(known_video),
            "user_country": pop.user_country.take(user),
            "user_age_group": pop.user_age_group.take(user),
            "creator_id": pc.if_else(known_video, pop.video_creator.take(video), missing),
            "topic": pc.if_else(known_video, pop.video_topic.take(video), missing),
            "upload_time": pa.array(
                pop.video_upload_ms[video] * 1000, type=pa.timestamp("us", tz="UTC"), mask=~known_video
            ),
            "event_date": pa.array((event_ms // DAY_MS).astype(np.int32), type=pa.date32()),
            "event_hour": hour_text.take(event_ms // HOUR_MS - hour_base),
        }
    )


@dataclass
class Generated:
    events: int
    window_events: int
    files: int
    commits: int
    seconds: float


def generate_silver(
    spark: SparkSession, config: ReelhouseConfig, events: int, chunk: int, as_of: dt.datetime, seed: int
) -> Generated:
    """Write ``events`` silver rows over the 28 days before ``as_of``, committing once per chunk."""
    started = time.monotonic()
    lake = Lake(config.lake)
    end_ms = int(as_of.timestamp() * 1000)
    start_ms = end_ms - WINDOWS["28d"] * 1000
    rng = np.random.default_rng(seed)
    sim = config.simulator
    pop = Population.draw(rng, sim.users, sim.videos, sim.topics, start_ms)
    chunks = max(1, -(-events // chunk))
    bounds = np.linspace(start_ms, end_ms, chunks + 1).astype(np.int64)
    written, window, files = 0, 0, 0
    for i in range(chunks):
        count = events // chunks + (1 if i < events % chunks else 0)
        table = silver_chunk(rng, pop, written, count, int(bounds[i]), int(bounds[i + 1]))
        event_us = pc.cast(table["event_time"], pa.int64()).to_numpy()
        window += int(np.count_nonzero((event_us >= start_ms * 1000) & (event_us < end_ms * 1000)))
        commit = lake.write_arrow(spark, table, SILVER_EVENTS)
        written += count
        files += commit.files
        log.info("silver chunk %d/%d: %d rows, %d files", i + 1, chunks, count, commit.files)
    return Generated(written, window, files, chunks, time.monotonic() - started)


def bench_config(base: ReelhouseConfig, work: Path, driver_memory: str | None, extra: list[str]) -> ReelhouseConfig:
    """The config with the lake in ``work`` and the bench's Spark settings on top of the config's."""
    conf = dict(base.spark.conf)
    conf.setdefault("spark.local.dir", str(work / "spark-local"))
    conf.setdefault("spark.ui.showConsoleProgress", "false")
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    for setting in extra:
        key, sep, value = setting.partition("=")
        if not sep:
            raise SystemExit(f"--spark-conf takes KEY=VALUE, got {setting!r}")
        conf[key.strip()] = value.strip()
    return base.model_copy(
        update={
            "lake": base.lake.model_copy(update={"root": str(work / "lake")}),
            "spark": base.spark.model_copy(update={"conf": conf}),
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows generated and committed at a time")
    parser.add_argument("--repeat", type=int, default=1, help="build_features calls; the median counts")
    parser.add_argument(
        "--as-of", type=dt.datetime.fromisoformat, default=DEFAULT_AS_OF, help="feature time (whole UTC hour)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--driver-memory", default=None, help="override spark.driver.memory of the config")
    parser.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )
    parser.add_argument("--work", default=None, help="scratch directory (default: <data_dir>/bench/features)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lake afterwards")
    args = parser.parse_args()
    configure_logging()

    base = load_config(args.config)
    work = Path(args.work or Path(base.data_dir) / "bench" / "features").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = bench_config(base, work, args.driver_memory, args.spark_conf)
    spark = None
    try:
        from reelhouse.features.gold import build_features
        from reelhouse.session import spark_session

        spark_started = time.monotonic()
        spark = spark_session(config, "bench-features")
        spark_s = time.monotonic() - spark_started
        generated = generate_silver(spark, config, args.events, args.chunk, args.as_of, args.seed)
        log.info("generated %d silver events in %.1f s", generated.events, generated.seconds)
        runs: list[float] = []
        result = None
        for _ in range(max(1, args.repeat)):
            started = time.monotonic()
            result = build_features(spark, config, args.as_of)
            runs.append(time.monotonic() - started)
            log.info("build_features: %.1f s, rows %s", runs[-1], result.rows)
        build_s = statistics.median(runs)
        report = {
            "benchmark": "features",
            "silver_events": generated.events,
            "window_events": generated.window_events,
            "events_per_s": round(generated.window_events / build_s),
            "build_s": round(build_s, 2),
            "build_runs_s": [round(r, 2) for r in runs],
            "generate_s": round(generated.seconds, 2),
            "generate_events_per_s": round(generated.events / generated.seconds),
            "silver_files": generated.files,
            "silver_commits": generated.commits,
            "rows": result.rows if result else {},
            "feature_time": args.as_of.isoformat(),
            "spark_master": spark.sparkContext.master,
            "spark_cores": spark.sparkContext.defaultParallelism,
            "machine_cores": os.cpu_count(),
            "driver_memory": spark.conf.get("spark.driver.memory", "1g"),
            "shuffle_partitions": int(spark.conf.get("spark.sql.shuffle.partitions")),
            "spark_start_s": round(spark_s, 2),
            "spark_conf": dict(config.spark.conf),
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
