"""The speed layer's values equal the batch layer's over the same events (the lambda promise)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from reelhouse.events.contract import make_event
from reelhouse.features.batch import window_features, with_shares
from reelhouse.features.gold import realtime_feature_table
from reelhouse.features.registry import ENTITY_KEYS, KEY_SEPARATOR, feature_names
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.online import open_online_store
from reelhouse.speed.job import run_speed_layer
from tests.integration.speed.conftest import fresh_speed_config, write_videos
from tests.integration.streaming.conftest import DEVICE, produce_events
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration

TOPICS = ("dance", "food", "tech")
EVENT_SCHEMA = (
    "event_id string, user_id string, video_id string, topic string, event_type string, event_time timestamp, "
    "watch_ms long, video_duration_ms long, upload_time timestamp"
)


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def generate(rng: random.Random, now: dt.datetime, count: int) -> tuple[list[dict], dict]:
    """Events over the last hours (some days old, some stamped ahead of the broker), with resends."""
    videos = {f"v{i}": (rng.choice(TOPICS), now - dt.timedelta(days=rng.randint(1, 40))) for i in range(6)}
    events = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.1:
            at = now - dt.timedelta(days=rng.uniform(1, 20))  # counts in the long windows only
        elif roll < 0.15:
            at = now + dt.timedelta(minutes=rng.uniform(5, 120))  # a device clock running ahead
        else:
            at = now - dt.timedelta(minutes=rng.uniform(0, 300))
        kind = rng.choice(("impression", "impression", "play", "play", "like", "share", "comment", "skip", "follow"))
        extra = (
            {"watch_ms": rng.randint(0, 40_000), "video_duration_ms": rng.randint(5_000, 30_000)}
            if kind == "play"
            else {}
        )
        events.append(
            make_event(
                event_id=f"e{i:05d}",
                event_type=kind,
                user_id=f"u{rng.randint(0, 5)}",
                video_id=f"v{rng.randint(0, 7)}",  # v6 and v7 are not in dim_videos
                event_time_ms=int(at.timestamp() * 1000),
                session_id="s1",
                device=DEVICE,
                **extra,
            )
        )
    resent = [e for e in rng.sample(events, count // 10) if e["event_time"] <= now.timestamp() * 1000]
    return events + resent, videos


def batch_frame(spark, messages, videos):
    """The events as the batch layer sees them: once each, at LEAST(event_time, received)."""
    seen = {}
    for m in sorted(messages, key=lambda m: m.timestamp()[1]):
        event = orjson.loads(m.value())
        if event["event_id"] in seen:
            continue
        at = min(event["event_time"], m.timestamp()[1])
        topic, uploaded = videos.get(event["video_id"], (None, None))
        seen[event["event_id"]] = (
            event["event_id"],
            event["user_id"],
            event["video_id"],
            topic,
            event["event_type"],
            dt.datetime.fromtimestamp(at / 1000, dt.UTC),
            event.get("watch_ms"),
            event.get("video_duration_ms"),
            uploaded,
        )
    return spark.createDataFrame(list(seen.values()), EVENT_SCHEMA)


def batch_values(frame, feature_time: dt.datetime) -> dict[str, dict[str, dict]]:
    per_entity = {}
    for entity in ENTITY_KEYS:
        source = frame.where(F.col("topic").isNotNull()) if entity == "user_topic" else frame
        per_entity[entity] = window_features(source, entity, feature_time)
    values = {}
    for entity, features in per_entity.items():
        rows = with_shares(features, entity, per_entity).collect()
        values[entity] = {KEY_SEPARATOR.join(r[k] for k in ENTITY_KEYS[entity]): r.asDict() for r in rows}
    return values


def assert_same(entity: str, key: str, got: dict, expected: dict) -> None:
    for name in feature_names(entity):
        want = expected[name]
        assert got[name] == (None if want is None else pytest.approx(want, rel=1e-9, abs=1e-9)), (entity, key, name)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31))
def test_streamed_features_equal_a_batch_recomputation(spark, stack_config, tmp_path_factory, seed):
    rng = random.Random(seed)
    root = tmp_path_factory.mktemp("speed")
    from reelhouse.config import TopicConfig

    config = fresh_speed_config(
        stack_config, root, TopicConfig(name=f"speed-prop-{uuid.uuid4().hex[:10]}", partitions=2)
    )
    # A watermark longer than the data's disorder: nothing is late, and several micro-batches
    # (150 records each) merge tiles through Spark state and the online store.
    config = config.model_copy(update={"speed": config.speed.model_copy(update={"watermark_s": 40 * 86_400})})
    now = dt.datetime.now(dt.UTC)
    events, videos = generate(rng, now, 400)
    write_videos(spark, config, videos)
    produce_events(config, events)
    messages = read_topic(config.kafka, config.kafka.events_topic.name)
    assert len(messages) == len(events)

    result = run_speed_layer(spark, config, trigger="available_now")
    assert result.batches >= 2

    frame = batch_frame(spark, messages, videos).cache()
    store = open_online_store(config.online_store)
    try:
        by_time: dict[dt.datetime, list[tuple[str, str, dict]]] = defaultdict(list)
        for entity in ENTITY_KEYS:
            keys = sorted(
                {
                    KEY_SEPARATOR.join(r[k] for k in ENTITY_KEYS[entity])
                    for r in frame.collect()
                    if all(r[k] is not None for k in ENTITY_KEYS[entity])
                }
            )
            rows = store.read(features_view(entity), keys, now=now)
            assert all(rows.values()), f"{entity}: keys without an online row"
            for key, row in rows.items():
                by_time[row.feature_time].append((entity, key, dict(row.values)))
        for feature_time, rows in by_time.items():
            expected = batch_values(frame, feature_time)
            for entity, key, values in rows:
                assert_same(entity, key, values, expected[entity][key])
    finally:
        store.close()

    # The real-time Delta table holds the same final values: the last row computed per key.
    lake = Lake(config.lake)
    rt = lake.to_arrow(realtime_feature_table("video").name).to_pylist()
    latest = {}
    for row in sorted(rt, key=lambda r: (r["feature_time"], r["batch_id"])):
        latest[row["video_id"]] = row
    store = open_online_store(config.online_store)
    try:
        online = store.read(features_view("video"), sorted(latest), now=now)
    finally:
        store.close()
    for key, row in latest.items():
        assert_same("video", key, row, dict(online[key].values))
    frame.unpersist()


def impression(event_id: str, video: str, at: dt.datetime, user: str = "u1") -> tuple[bytes, bytes]:
    event = make_event(
        event_id=event_id,
        event_type="impression",
        user_id=user,
        video_id=video,
        event_time_ms=int(at.timestamp() * 1000),
        session_id="s1",
        device=DEVICE,
    )
    return user.encode(), orjson.dumps(event)


def test_awkward_input_has_its_documented_outcome(spark, speed_config):
    """Skewed clocks are clamped, disorder within the watermark counts, later events wait for
    the batch layer, unknown videos count without a topic, malformed records are skipped."""
    config = speed_config.model_copy(update={"speed": speed_config.speed.model_copy(update={"watermark_s": 600})})
    write_videos(spark, config, {"vk": ("dance", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))})
    now = dt.datetime.now(dt.UTC)
    topic = config.kafka.events_topic.name
    keys, values = zip(
        *[
            impression("a1", "vk", now),
            impression("a2", "vk", now - dt.timedelta(minutes=4)),  # out of order, inside the watermark
            impression("a3", "vk", now + dt.timedelta(hours=3)),  # device clock 3 h ahead: counted at receipt
            impression("a4", "vz", now),  # a video dim_videos does not know
            (b"u1", b"{not json"),  # quarantined by ingestion, skipped here
        ]
    )
    produce(config.kafka, topic, values, keys)
    first = run_speed_layer(spark, config, trigger="available_now")
    assert first.batches >= 1
    keys, values = zip(
        *[
            impression("b1", "vk", now - dt.timedelta(hours=2)),  # behind the watermark: dropped here
            impression("b2", "vk", now - dt.timedelta(minutes=3)),  # late but inside the watermark
            impression("a1", "vk", now),  # a resent duplicate
        ]
    )
    produce(config.kafka, topic, values, keys)
    run_speed_layer(spark, config, trigger="available_now")

    store = open_online_store(config.online_store)
    try:
        videos = store.read(features_view("video"), ["vk", "vz"], now=now)
        topics = store.read(features_view("user_topic"), ["u1|dance"], now=now)
    finally:
        store.close()
    vk, vz = videos["vk"], videos["vz"]
    assert vk.values["video_impressions_1d"] == 4  # a1, a2, a3, b2: not b1, not the resent a1
    # The clamped event sits in the hour it was received, not three hours ahead.
    assert vk.feature_time <= floor_hour(dt.datetime.now(dt.UTC)) + dt.timedelta(hours=1)
    assert vk.values["video_age_s"] > 0
    assert vz.values["video_impressions_1d"] == 1 and vz.values["video_age_s"] is None
    assert topics["u1|dance"].values["user_topic_plays_7d"] == 0  # impressions are not plays...
    assert topics["u1|dance"].values["user_topic_affinity_7d"] is None  # ...nor engagement
