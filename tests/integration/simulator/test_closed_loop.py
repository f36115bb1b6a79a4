"""The closed loop against the real feed service (uvicorn on loopback) and the real broker.

The service's environment is built from the simulator's own catalogue (same user and video ids,
topics and creators), so every video a feed shows has latent tastes the simulated users react to.
The experiment splits users between the LightGBM champion and a random order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest
from pyspark.sql import SparkSession

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import validate_payload
from reelhouse.lake import Lake
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.serving.server import ServingServer
from reelhouse.simulator.catalogue import Catalogue, creator_id, video_id
from reelhouse.simulator.closed_loop import run_closed_loop
from reelhouse.simulator.options import ClosedLoopOptions
from tests.integration.conftest import build_test_config
from tests.integration.serving.conftest import (
    TOKEN,
    serving_config,
    synthetic_training_set,
    train_registered_rankers,
    write_online_features,
    write_recall_tables,
)
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

EXPERIMENT = "closed-loop"


@pytest.fixture(scope="module")
def environment(
    tmp_path_factory: pytest.TempPathFactory, stack_config: ReelhouseConfig, spark: SparkSession
) -> ReelhouseConfig:
    """A small catalogue written where the closed loop reads it, and the service's tables, store and rankers over it."""
    root = tmp_path_factory.mktemp("closed_loop")
    rng = np.random.default_rng(3)
    now = dt.datetime.now(dt.UTC)
    config = build_test_config(root)
    topic = stack_config.kafka.events_topic.model_copy(update={"name": f"closed-loop-{uuid.uuid4().hex[:12]}"})
    config = config.model_copy(update={"kafka": stack_config.kafka.model_copy(update={"events_topic": topic})})
    config = serving_config(
        config,
        experiments=[{"name": EXPERIMENT, "variants": [
            {"name": "random", "share": 0.5, "ranker": "random"},
            {"name": "ranker", "share": 0.5, "ranker": "alias:champion"},
        ]}],
        simulator={"catalogue_dir": str(root / "catalogue"), "seed": 5},
        mlflow={"tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}", "artifact_root": str(root / "mlflow" / "art")},
        online_store={"path": root / "online" / "features.db"},
        training={
            "max_fit_rows": 2_000,
            "lgbm_params": {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 20, "n_jobs": 1},
            "lr_params": {"C": 1.0, "max_iter": 200},
        },
        serving={"token": TOKEN, "candidates": 80, "alias_poll_s": 0.5, "tables_poll_s": 0.5},
    )  # fmt: skip
    catalogue = Catalogue(seed=5, users=150, videos=600, topics=6, creators=40, zipf_exponent=1.1, uploads_per_hour=0)
    catalogue.write(config.simulator.catalogue_dir, int(now.timestamp() * 1000))
    users, videos = catalogue.user_ids(), catalogue.video_ids()
    topic_of = {video_id(i): catalogue.topics[t] for i, t in enumerate(catalogue.videos.topic.tolist())}
    creator_of = {video_id(i): creator_id(c) for i, c in enumerate(catalogue.videos.creator.tolist())}
    new_videos = videos[-12:]
    upload_of = {v: now - dt.timedelta(days=10) for v in videos}
    upload_of.update({v: now - dt.timedelta(hours=1 + i) for i, v in enumerate(new_videos)})
    write_recall_tables(
        spark, Lake(config.lake), config, users, videos, topic_of, creator_of, upload_of, new_videos,
        candidates_per_user=120, neighbours_per_video=10, trending_size=100, rng=rng, now=now,
    )  # fmt: skip
    store = SqliteOnlineStore(config.online_store.path, default_ttl_s=config.online_store.ttl_s)
    try:
        write_online_features(store, users, videos, list(catalogue.topics), rng, now)
    finally:
        store.close()
    train_registered_rankers(config, synthetic_training_set(2_000, users, list(catalogue.topics), rng))
    from reelhouse.kafka.clients import ensure_topic

    ensure_topic(config.kafka, config.kafka.events_topic)
    return config


@pytest.fixture(scope="module")
def looped(environment: ReelhouseConfig) -> tuple:
    """One closed-loop run against the service; its report and markdown."""
    with ServingServer(environment) as server:
        options = ClosedLoopOptions.from_config(
            environment, url=server.url, users=40, concurrency=8, sessions=2, max_pages=3, time_scale=2_000.0, seed=9
        )
        return run_closed_loop(environment, options)


def test_simulated_users_request_feeds_react_and_their_events_reach_kafka(environment: ReelhouseConfig, looped) -> None:
    config = environment
    report, markdown = looped

    # Every feed answered, every reaction accepted by the real contract check, every video known.
    assert report.feed_errors == {} and report.event_errors == {} and report.ok
    assert report.users == 40 and report.sessions == 80 and report.feeds >= 80
    assert report.unknown_videos == 0 and report.impressions > 0
    # Both variants of the experiment served, each by its own ranker.
    variants = {row["variant"]: row for row in report.variants}
    assert set(variants) == {"random", "ranker"}
    assert variants["random"]["rankers"] == ["random"]
    rankers = set(variants["ranker"]["rankers"])
    model = {r for r in rankers if r.startswith(config.training.registered_model + "/")}
    # A feed whose features or model ran out of time is served in trending order, and says so.
    assert rankers - model <= {"trending"} and (model or report.degraded)
    assert sum(row["impressions"] for row in report.variants) == report.impressions
    # Compared with the experiment's first variant as the control, over the four metrics.
    control = [c for c in report.comparisons if c["delta"] is None]
    assert {c["variant"] for c in control} == {"random"} and len(report.comparisons) == 8
    assert "| closed-loop | ranker |" in markdown and Path(report.paths["json"]).exists()

    # The topic holds the service's impressions and the loop's outcomes, linked by request_id.
    messages = read_topic(config.kafka, config.kafka.events_topic.name)
    rows = [validate_payload(m.value(), m.timestamp()[1]) for m in messages]
    impressions = [r for r in rows if r["event_type"] == "impression"]
    outcomes = [r for r in rows if r["event_type"] != "impression"]
    assert len(impressions) == report.impressions and len(outcomes) == report.events_posted
    shown = defaultdict(set)
    for r in impressions:
        shown[r["request_id"]].add((r["user_id"], r["video_id"]))
        assert r["variant"] in (f"{EXPERIMENT}:random", f"{EXPERIMENT}:ranker")
    for r in outcomes:
        assert (r["user_id"], r["video_id"]) in shown[r["request_id"]]
    per_shown = defaultdict(list)
    for r in outcomes:
        per_shown[(r["request_id"], r["video_id"])].append(r["event_type"])
    assert len(per_shown) == report.impressions  # a play or a skip for every shown video
    assert all(kinds.count("play") + kinds.count("skip") == 1 for kinds in per_shown.values())
    written = orjson.loads(Path(report.paths["json"]).read_bytes())
    assert written["events_posted"] == len(outcomes)


def test_served_impressions_and_their_outcomes_become_training_examples(environment: ReelhouseConfig, looped, spark):
    """The feedback loop through the lake: the service's impressions and the users' outcomes land in
    bronze through the ingestion job, silver keeps the variant, and the next training set has one
    example per served impression, labelled by the outcome the user reported for it."""
    from reelhouse.features.gold import build_features
    from reelhouse.silver.build import build_silver
    from reelhouse.silver.tables import SILVER_EVENTS
    from reelhouse.streaming.ingest import run_ingestion
    from reelhouse.training.dataset import build_training_set

    config = environment
    report, _ = looped
    ingested = run_ingestion(spark, config, trigger="available_now")
    assert ingested.quarantine_rows == 0 and ingested.bronze_rows == report.impressions + report.events_posted
    lake = Lake(config.lake)
    now = dt.datetime.now(dt.UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    end = start + dt.timedelta(hours=3)
    build_silver(spark, config, start, end)
    silver = lake.to_arrow(SILVER_EVENTS.name, columns=["event_type", "request_id", "variant"]).to_pylist()
    shown = [r for r in silver if r["event_type"] == "impression"]
    assert len(shown) == report.impressions
    assert {r["variant"] for r in shown} == {f"{EXPERIMENT}:random", f"{EXPERIMENT}:ranker"}

    build_features(spark, config, end)
    built = build_training_set(spark, config, start, end)
    examples = lake.to_arrow(config.training.table, columns=["request_id", "video_id", "label", "watch_ratio"])
    assert sum(built.rows.values()) == examples.num_rows == report.impressions
    served = {(r["request_id"], r["video_id"]) for r in examples.to_pylist()}
    assert len(served) == report.impressions
    # Labelled by what the users did: some watched enough (positive), some skipped (negative).
    labels = examples.column("label").to_pylist()
    assert 0 < sum(labels) < len(labels)
