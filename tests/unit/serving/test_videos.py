"""The in-memory video features (serving/videos.py) against an embedded SQLite online store."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from reelhouse.features.registry import feature_names
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.online.store import FeatureRow, feature_version
from reelhouse.serving.features import VIEWS, feature_vector
from reelhouse.serving.videos import VideoFeatureTable

NOW = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NAMES = feature_names("video")
VIEW = VIEWS["video"]


def row(video: str, value: float, hour: int = 11, seq: int | None = None, ttl_h: float = 24.0) -> FeatureRow:
    feature_time = dt.datetime(2026, 11, 21, hour, tzinfo=dt.UTC)
    values = {name: value + i for i, name in enumerate(NAMES)}
    return FeatureRow(
        video, values, feature_time, feature_version(feature_time, seq), feature_time + dt.timedelta(hours=ttl_h)
    )


@pytest.fixture
def store(tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    yield store
    store.close()


def test_lookup_gives_the_stored_values_and_nan_for_videos_without_a_row(store):
    store.write(VIEW, [row("v1", 1.0), row("v2", 2.0)])
    table = VideoFeatureTable()
    assert not table.loaded
    assert table.refresh(store, now=NOW) == 2
    got = table.lookup(["v2", "unknown", "v1"], NOW_MS)
    np.testing.assert_array_equal(got[0], feature_vector("video", row("v2", 2.0).values))
    assert np.isnan(got[1]).all()
    np.testing.assert_array_equal(got[2], feature_vector("video", row("v1", 1.0).values))
    assert table.loaded and len(table) == 2


def test_a_refresh_takes_newer_versions_and_new_videos_only(store):
    store.write(VIEW, [row("v1", 1.0)])
    table = VideoFeatureTable()
    table.refresh(store, now=NOW)
    store.write(
        VIEW, [row("v1", 5.0, hour=12, seq=7), row("v3", 3.0)]
    )  # a speed-layer value of a later hour, a new video
    assert table.refresh(store, now=NOW) == 2
    assert table.lookup(["v1"], NOW_MS)[0, 0] == 5.0
    assert table.lookup(["v3"], NOW_MS)[0, 0] == 3.0
    # Nothing new: rows the scan returns again (its overlap) are not decoded again.
    assert table.refresh(store, now=NOW) == 0


def test_the_table_grows_past_its_initial_capacity(store):
    store.write(VIEW, [row(f"v{i}", float(i)) for i in range(1_500)])
    table = VideoFeatureTable()
    table.refresh(store, now=NOW)
    store.write(VIEW, [row(f"w{i}", float(i)) for i in range(3_000)])
    table.refresh(store, now=NOW)
    assert len(table) == 4_500
    got = table.lookup(["v1499", "w2999", "v0"], NOW_MS)
    assert got[:, 0].tolist() == [1499.0, 2999.0, 0.0]


def test_a_row_is_missing_once_its_expiry_passed(store):
    store.write(VIEW, [row("v1", 1.0, ttl_h=1.5)])  # feature time 11:00, expires 12:30
    table = VideoFeatureTable()
    table.refresh(store, now=NOW)
    assert not np.isnan(table.lookup(["v1"], NOW_MS)).any()
    later = NOW_MS + 31 * 60_000
    assert np.isnan(table.lookup(["v1"], later)).all()


def test_lookup_of_an_empty_table_is_all_missing(store):
    table = VideoFeatureTable()
    table.refresh(store, now=NOW)
    assert table.loaded
    assert table.lookup(["v1", "v2"], NOW_MS).shape == (2, len(NAMES))
    assert np.isnan(table.lookup(["v1", "v2"], NOW_MS)).all()
    assert table.lookup([], NOW_MS).shape == (0, len(NAMES))
