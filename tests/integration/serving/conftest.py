"""A real environment for the feed service, built the way production builds one, only smaller.

:func:`build_serving_environment` writes, under one directory:

* Delta tables (delta-rs, the project's lake API): ``dim_videos``, ``dim_users``,
  ``user_candidates`` (per user a blended list with several sources and exploration picks, plus
  the ``'*'`` trending list) and ``item_neighbours`` (each video's nearest videos of its topic);
* a SQLite online store with ``video_features``, ``user_features`` and ``user_topic_features``
  rows of every registry feature (the batch layer's row format and versions);
* an MLflow SQLite registry with both rankers trained, logged and registered by the project's
  own code (:func:`reelhouse.training.ranker.train_rankers`, via `bench/serving_data.py`) on a synthetic training set whose
  categories are the catalogue's; LightGBM holds ``champion``, logistic regression ``challenger``;
* a Kafka topic of its own on the session's broker, when a Kafka config is given.

Everything is parameterised by catalogue size (users, videos, candidates per user ...), so a
benchmark can build a larger one with the same function. :func:`serving_config` derives configs
of the same environment (another alias, a broken store path, an experiment).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bench.serving_data import (  # noqa: F401 - AUTH and set_alias are re-exported for the serving tests
    AGE_GROUPS,
    AUTH,
    COUNTRIES,
    TABLE_SOURCES,
    TOKEN,
    feature_values,
    registry_client,
    serving_config,
    set_alias,
    synthetic_training_set,
    train_registered_rankers,
)
from reelhouse.config import KafkaConfig, ReelhouseConfig
from reelhouse.features.registry import KEY_SEPARATOR
from reelhouse.features.views import features_view
from reelhouse.lake import Lake, TableSpec
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.online.store import FeatureRow, feature_version
from reelhouse.recall.tables import ANY_USER, candidates_table, neighbours_table
from reelhouse.serving.server import ServingServer
from reelhouse.silver.tables import DIM_USERS, DIM_VIDEOS
from tests.integration.conftest import build_test_config


@dataclass
class ServingEnvironment:
    root: Path
    config: ReelhouseConfig
    users: list[str]  # users with a candidate list (and a dim_users row)
    videos: list[str]
    topic_of: dict[str, str]
    creator_of: dict[str, str]
    new_videos: list[str]  # uploaded within recall.new_video_hours
    candidates_of: dict[str, list[str]]
    trending: list[str]
    neighbours_of: dict[str, list[str]]
    versions: dict[str, int] = field(default_factory=dict)  # model kind -> registered version

    @property
    def registered_model(self) -> str:
        return self.config.training.registered_model


def _write(spark: Any, lake: Lake, spec: TableSpec, rows: list[dict[str, Any]]) -> None:
    lake.write_arrow(spark, pa.Table.from_pylist(rows, schema=spec.schema), spec, mode="overwrite")


def write_recall_tables(
    spark: Any,
    lake: Lake,
    config: ReelhouseConfig,
    users: list[str],
    videos: list[str],
    topic_of: dict[str, str],
    creator_of: dict[str, str],
    upload_of: dict[str, dt.datetime],
    new_videos: list[str],
    candidates_per_user: int,
    neighbours_per_video: int,
    trending_size: int,
    rng: np.random.Generator,
    now: dt.datetime,
) -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
    """dim_videos, dim_users, user_candidates and item_neighbours; returns the lists written."""
    stamp = now
    _write(
        spark,
        lake,
        DIM_VIDEOS,
        [
            {
                "video_id": v,
                "creator_id": creator_of[v],
                "topic": topic_of[v],
                "duration_ms": 15_000,
                "upload_time": upload_of[v],
                "updated_at": stamp,
            }
            for v in videos
        ],
    )
    _write(
        spark,
        lake,
        DIM_USERS,
        [
            {
                "user_id": u,
                "country": COUNTRIES[i % len(COUNTRIES)],
                "os": "android",
                "app_version": "1.0",
                "age_group": AGE_GROUPS[i % len(AGE_GROUPS)],
                "signup_time": now - dt.timedelta(days=30),
                "updated_at": stamp,
            }
            for i, u in enumerate(users)
        ],
    )
    old = [v for v in videos if v not in set(new_videos)]
    popularity = rng.zipf(1.6, len(old)).astype(float)
    trending = [old[i] for i in np.argsort(-popularity, kind="stable")[:trending_size]]
    rows: list[dict[str, Any]] = []
    candidates_of: dict[str, list[str]] = {}
    for user in users:
        picks = list(rng.choice(old, size=min(candidates_per_user, len(old)), replace=False))
        explore = list(rng.choice(new_videos, size=min(2, len(new_videos)), replace=False)) if new_videos else []
        listed = picks + explore
        candidates_of[user] = listed
        for position, video in enumerate(listed):
            exploration = position >= len(picks)
            rows.append(
                {
                    "user_id": user,
                    "video_id": video,
                    "source": "exploration" if exploration else TABLE_SOURCES[position % len(TABLE_SOURCES)],
                    "source_rank": position // len(TABLE_SOURCES),
                    "score": None if exploration else float(1.0 / (1 + position)),
                    "position": position,
                    "as_of": now,
                }
            )
    for position, video in enumerate(trending):
        rows.append(
            {
                "user_id": ANY_USER,
                "video_id": video,
                "source": "popularity",
                "source_rank": position,
                "score": float(1000.0 / (1 + position)),
                "position": position,
                "as_of": now,
            }
        )
    _write(spark, lake, candidates_table(config.recall), rows)

    by_topic: dict[str, list[str]] = {}
    for video in videos:
        by_topic.setdefault(topic_of[video], []).append(video)
    neighbours_of: dict[str, list[str]] = {}
    rows = []
    for video in videos:
        same = [v for v in by_topic[topic_of[video]] if v != video]
        near = list(rng.choice(same, size=min(neighbours_per_video, len(same)), replace=False))
        neighbours_of[video] = near
        rows += [
            {"video_id": video, "neighbour_id": n, "source": "covisit", "rank": r, "score": 1.0 / (1 + r), "as_of": now}
            for r, n in enumerate(near)
        ]
    _write(spark, lake, neighbours_table(config.recall), rows)
    return candidates_of, trending, neighbours_of


def write_online_features(
    store: SqliteOnlineStore,
    users: list[str],
    videos: list[str],
    topics: list[str],
    rng: np.random.Generator,
    now: dt.datetime,
) -> None:
    """Rows of every registry feature for every video, user and (user, topic), as of the last whole hour."""
    feature_time = now.replace(minute=0, second=0, microsecond=0)
    version = feature_version(feature_time)

    def rows(entity: str, keys: list[str]) -> list[FeatureRow]:
        return [FeatureRow(key, feature_values(entity, rng), feature_time, version) for key in keys]

    store.write(features_view("video"), rows("video", videos))
    store.write(features_view("user"), rows("user", users))
    store.write(
        features_view("user_topic"), rows("user_topic", [f"{u}{KEY_SEPARATOR}{t}" for u in users for t in topics])
    )


def register_unloadable_version(config: ReelhouseConfig, copy_of: int, root: Path) -> int:
    """A new version of the registered model whose artifacts were deleted after registration."""
    import shutil

    import mlflow.artifacts

    client = registry_client(config)
    name = config.training.registered_model
    target = root / f"deleted-model-{uuid.uuid4().hex[:8]}"
    location = client.get_model_version_download_uri(name, str(copy_of))
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=str(target), tracking_uri=config.mlflow.tracking_uri
    )
    version = client.create_model_version(name, source=Path(local).as_uri(), run_id=None).version
    shutil.rmtree(target)
    return int(version)


def build_serving_environment(
    spark: Any,
    root: Path,
    *,
    kafka: KafkaConfig | None = None,
    users: int = 40,
    videos: int = 300,
    topics: int = 6,
    creators: int = 30,
    new_videos: int = 12,
    candidates_per_user: int = 60,
    neighbours_per_video: int = 10,
    trending: int = 100,
    training_rows: int = 2_000,
    seed: int = 7,
    serving: dict[str, Any] | None = None,
) -> ServingEnvironment:
    """Everything the feed service reads (module docstring), under ``root``."""
    rng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.UTC)
    config = build_test_config(root)
    if kafka is not None:
        topic = kafka.events_topic.model_copy(update={"name": f"serving-{uuid.uuid4().hex[:12]}"})
        config = config.model_copy(update={"kafka": kafka.model_copy(update={"events_topic": topic})})
    config = serving_config(
        config,
        mlflow={
            "tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "artifact_root": str(root / "mlflow" / "artifacts"),
        },
        online_store={"path": root / "online" / "features.db"},
        training={
            "max_fit_rows": training_rows,
            "lgbm_params": {
                "n_estimators": 40,
                "learning_rate": 0.1,
                "num_leaves": 15,
                "min_child_samples": 20,
                "n_jobs": 1,
            },
            "lr_params": {"C": 1.0, "max_iter": 200},
        },
        # A deterministic page: these tests check the ranking and re-ranking rules' order. The
        # epsilon-greedy slots (rerank.explore) have unit tests; the loop test checks propensities end to end.
        serving={"token": TOKEN, "explore_epsilon": 0.0, **(serving or {})},
        experiments=[],  # the default feed; tests of experiments configure their own
    )
    user_ids = [f"u{i}" for i in range(users)]
    video_ids = [f"v{i}" for i in range(videos)]
    topic_names = [f"t{i}" for i in range(topics)]
    topic_of = {v: topic_names[i % topics] for i, v in enumerate(video_ids)}
    creator_of = {v: f"c{(i * 7) % creators}" for i, v in enumerate(video_ids)}
    fresh = video_ids[-new_videos:] if new_videos else []
    upload_of = {v: now - dt.timedelta(days=10) for v in video_ids}
    upload_of.update({v: now - dt.timedelta(hours=1 + i) for i, v in enumerate(fresh)})

    lake = Lake(config.lake)
    candidates_of, trending_list, neighbours_of = write_recall_tables(
        spark,
        lake,
        config,
        user_ids,
        video_ids,
        topic_of,
        creator_of,
        upload_of,
        fresh,
        candidates_per_user,
        neighbours_per_video,
        trending,
        rng,
        now,
    )
    store = SqliteOnlineStore(config.online_store.path, default_ttl_s=config.online_store.ttl_s)
    try:
        write_online_features(store, user_ids, video_ids, topic_names, rng, now)
    finally:
        store.close()
    versions = train_registered_rankers(config, synthetic_training_set(training_rows, user_ids, topic_names, rng))
    if kafka is not None:
        from reelhouse.kafka.clients import ensure_topic

        ensure_topic(config.kafka, config.kafka.events_topic)
    return ServingEnvironment(
        root=root,
        config=config,
        users=user_ids,
        videos=video_ids,
        topic_of=topic_of,
        creator_of=creator_of,
        new_videos=fresh,
        candidates_of=candidates_of,
        trending=trending_list,
        neighbours_of=neighbours_of,
        versions=versions,
    )


class TopicReader:
    """Every message of a topic from its start, as decoded JSON with its key; reads on demand."""

    def __init__(self, kafka: KafkaConfig) -> None:
        from confluent_kafka import TopicPartition

        from reelhouse.kafka.clients import admin_client, client_options, consumer

        topic = kafka.events_topic.name
        partitions = admin_client(kafka).list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer = consumer(client_options(kafka))
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def wait_for(self, done: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout_s: float = 60.0) -> list:
        """Read until ``done(messages)`` holds; fails after ``timeout_s`` (the broker is local)."""
        import orjson

        deadline = time.monotonic() + timeout_s
        while not done(self.messages):
            assert time.monotonic() < deadline, (
                f"the topic did not get the expected messages; read {len(self.messages)}"
            )
            for message in self._consumer.consume(10_000, timeout=0.2):
                assert message.error() is None, message.error()
                self.messages.append((message.key().decode(), orjson.loads(message.value())))
        return self.messages

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture(scope="session")
def serving_env(spark, tmp_path_factory: pytest.TempPathFactory, stack_config: ReelhouseConfig) -> ServingEnvironment:
    """The session's environment, with a topic on the session broker; feeds page through 60 candidates."""
    return build_serving_environment(
        spark,
        tmp_path_factory.mktemp("serving"),
        kafka=stack_config.kafka,
        serving={"candidates": 60, "max_k": 60, "alias_poll_s": 0.5, "tables_poll_s": 0.5},
    )


@pytest.fixture(scope="module")
def server(serving_env: ServingEnvironment) -> Iterator[ServingServer]:
    """The service over the session environment, on a free loopback port, for one test module."""
    with ServingServer(serving_env.config) as running:
        yield running


@pytest.fixture(scope="module")
def topic(serving_env: ServingEnvironment) -> Iterator[TopicReader]:
    """A reader of the session environment's events topic."""
    reader = TopicReader(serving_env.config.kafka)
    yield reader
    reader.close()
