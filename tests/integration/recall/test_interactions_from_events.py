"""Engagement weights of (user, video) pairs aggregated by Spark from silver-shaped events."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from reelhouse.config import RecallConfig
from reelhouse.recall.interactions import interactions_from_events

pytestmark = pytest.mark.integration

AS_OF = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("video_id", pa.string()),
        ("event_type", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("watch_ms", pa.int64()),
        ("video_duration_ms", pa.int64()),
    ]
)


def ago(**delta) -> dt.datetime:
    return AS_OF - dt.timedelta(**delta)


def event(user, video, kind, when, watch=None, duration=None, received=None):
    return {
        "user_id": user,
        "video_id": video,
        "event_type": kind,
        "event_time": when,
        "received_at": received or when + dt.timedelta(seconds=1),
        "watch_ms": watch,
        "video_duration_ms": duration,
    }


def test_weights_sum_watch_ratios_likes_and_shares_and_nothing_else(spark):
    rows = [
        event("u1", "v1", "play", ago(hours=5), 5_000, 10_000),  # 0.5
        event("u1", "v1", "play", ago(hours=4), 20_000, 10_000),  # capped at 1
        event("u1", "v1", "like", ago(hours=3)),  # 1
        event("u1", "v1", "share", ago(hours=2)),  # 2
        event("u1", "v1", "comment", ago(hours=1)),  # comments, impressions, skips, follows: 0
        event("u1", "v1", "impression", ago(minutes=30)),
        event("u1", "v1", "skip", ago(minutes=20)),
        event("u1", "v1", "follow", ago(minutes=10)),
        event("u1", "v2", "impression", ago(hours=1)),  # shown, never engaged: no pair
        event("u2", "v1", "like", AS_OF),  # at as_of: the next build's
        event("u2", "v2", "like", ago(days=29)),  # before the 28-day lookback
        # The device clock ran ahead: the event counts at the time the broker received it.
        event("u3", "v2", "like", AS_OF + dt.timedelta(hours=1), received=ago(hours=1)),
    ]
    got = interactions_from_events(pa.Table.from_pylist(rows, schema=SCHEMA), RecallConfig(), AS_OF, spark=spark)
    pairs = {
        (got.user_ids[u], got.item_ids[i]): (w, t)
        for u, i, w, t in zip(got.user, got.item, got.weight, got.time_s, strict=True)
    }
    assert set(pairs) == {("u1", "v1"), ("u3", "v2")}
    assert pairs[("u1", "v1")][0] == pytest.approx(0.5 + 1 + 1 + 2)
    assert pairs[("u1", "v1")][1] == ago(hours=2).timestamp()  # the latest engaging event, the share
    assert pairs[("u3", "v2")] == (1.0, ago(hours=1).timestamp())
