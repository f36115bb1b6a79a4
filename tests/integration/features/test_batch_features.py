"""Windowed features from a handful of hand-made events on local Spark."""

from __future__ import annotations

import datetime as dt

import pytest

from reelhouse.features import FEATURES, feature_names
from reelhouse.features.batch import window_features, with_shares

pytestmark = pytest.mark.integration

AS_OF = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
SCHEMA = (
    "user_id string, video_id string, topic string, event_type string, event_time timestamp, "
    "watch_ms long, video_duration_ms long, upload_time timestamp"
)


def ago(**delta) -> dt.datetime:
    return AS_OF - dt.timedelta(**delta)


def events(spark, rows):
    return spark.createDataFrame([(*row, *([None] * (8 - len(row)))) for row in rows], SCHEMA)


def test_video_features_count_each_window_and_stop_at_as_of(spark):
    rows = [
        # v1: impressions exactly 1 h / 30 min / 2 h / 2 days before (windows are [t - w, t)).
        ("u1", "v1", "t1", "impression", ago(minutes=30), None, None),
        ("u7", "v1", "t1", "impression", ago(hours=1), None, None),
        ("u2", "v1", "t1", "impression", ago(hours=2), None, None),
        ("u3", "v1", "t1", "impression", ago(days=2), None, None),
        # Exactly at as_of: belongs to the next feature time, not this one.
        ("u4", "v1", "t1", "impression", AS_OF, None, None),
        # Two plays in the last hour: one complete (10/10 s), one at 25%.
        ("u1", "v1", "t1", "play", ago(minutes=20), 10_000, 10_000),
        ("u4", "v1", "t1", "play", ago(minutes=1), 2_500, 10_000),
        ("u1", "v1", "t1", "like", ago(minutes=10), None, None),
        # After as_of: must not count anywhere (it was not known yet).
        ("u5", "v1", "t1", "impression", AS_OF + dt.timedelta(seconds=1), None, None),
        ("u5", "v1", "t1", "like", AS_OF + dt.timedelta(minutes=5), None, None),
        # Older than the longest video window (7 days).
        ("u6", "v1", "t1", "impression", ago(days=8), None, None),
    ]
    got = window_features(events(spark, rows), "video", AS_OF).collect()

    assert len(got) == 1
    v1 = got[0].asDict()
    assert (v1["video_impressions_1h"], v1["video_impressions_1d"], v1["video_impressions_7d"]) == (2, 3, 4)
    assert v1["video_age_s"] is None  # not in dim_videos
    assert v1["video_plays_1h"] == 2
    assert v1["video_completion_rate_1h"] == pytest.approx(0.5)  # one of two plays complete
    assert v1["video_mean_watch_ratio_1h"] == pytest.approx((1.0 + 0.25) / 2)
    assert v1["video_like_rate_1h"] == pytest.approx(1 / 2)  # one like over two impressions
    assert v1["feature_time"].replace(tzinfo=dt.UTC) == AS_OF
    assert set(v1) == {"video_id", "feature_time", *feature_names("video")}


def test_a_rate_without_a_denominator_is_null_not_zero(spark):
    rows = [("u1", "v2", "t1", "like", ago(minutes=5), None, None)]  # a like, no impression
    v2 = window_features(events(spark, rows), "video", AS_OF).collect()[0]
    assert v2["video_like_rate_1h"] is None
    assert v2["video_impressions_1h"] == 0


def test_user_topic_engagement_weights_plays_likes_and_shares(spark):
    rows = [
        ("u1", "v1", "sports", "play", ago(days=1), 5_000, 10_000),  # 0.5
        ("u1", "v2", "sports", "share", ago(days=2), None, None),  # 2
        ("u1", "v3", "sports", "like", ago(days=10), None, None),  # only in 28d: 1
        ("u1", "v4", "music", "play", ago(days=3), 30_000, 10_000),  # capped at 1
    ]
    got = {(r["user_id"], r["topic"]): r for r in window_features(events(spark, rows), "user_topic", AS_OF).collect()}
    assert got[("u1", "sports")]["user_topic_engagement_7d"] == pytest.approx(2.5)
    assert got[("u1", "sports")]["user_topic_engagement_28d"] == pytest.approx(3.5)
    assert got[("u1", "music")]["user_topic_engagement_7d"] == pytest.approx(1.0)


def test_trending_halves_every_half_life_by_hourly_tile_and_age_counts_from_upload(spark):
    uploaded = ago(days=3)
    rows = [
        ("u1", "v1", "t1", "share", ago(minutes=10), None, None, uploaded),  # tile ends at as_of: weight 1
        ("u2", "v1", "t1", "like", ago(hours=6, minutes=30), None, None, uploaded),  # tile ended 6 h ago: 1/2
        ("u3", "v1", "t1", "like", ago(days=8), None, None, uploaded),  # outside 7 d
    ]
    v1 = window_features(events(spark, rows), "video", AS_OF).collect()[0]
    assert v1["video_trending_score"] == pytest.approx(2.0 + 0.5)
    assert v1["video_age_s"] == 3 * 86_400


def test_topic_affinity_is_the_topics_share_of_the_users_engagement(spark):
    rows = [
        ("u1", "v1", "sports", "share", ago(days=1), None, None),  # 2
        ("u1", "v2", "music", "like", ago(days=2), None, None),  # 1
        ("u2", "v2", "music", "impression", ago(days=2), None, None),  # no engagement at all
    ]
    frame = events(spark, rows)
    per_entity = {e: window_features(frame, e, AS_OF) for e in ("user", "user_topic")}
    got = {
        (r["user_id"], r["topic"]): r for r in with_shares(per_entity["user_topic"], "user_topic", per_entity).collect()
    }
    assert got[("u1", "sports")]["user_topic_affinity_7d"] == pytest.approx(2 / 3)
    assert got[("u1", "music")]["user_topic_affinity_28d"] == pytest.approx(1 / 3)
    assert got[("u2", "music")]["user_topic_affinity_7d"] is None


def test_every_declared_feature_is_computed(spark):
    rows = [("u1", "v1", "t1", "play", ago(minutes=5), 1_000, 2_000)]
    frame = events(spark, rows)
    produced = set()
    for entity in ("video", "user", "user_topic"):
        produced |= set(window_features(frame, entity, AS_OF).columns)
    assert {f.name for f in FEATURES} <= produced


def test_naive_as_of_is_rejected(spark):
    with pytest.raises(ValueError, match="timezone"):
        window_features(events(spark, []), "video", dt.datetime(2026, 11, 21))
