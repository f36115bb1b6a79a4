"""User state for the feed: bounded "seen" lists, the SQLite store's batched and atomic calls, the writer."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from reelhouse.online import FeatureRow, SqliteOnlineStore
from reelhouse.serving.state import RECENT_VIEW, SEEN_VIEW, StateWriter, live_videos, merged_list
from tests.online_behaviour import DEFAULT_TTL_S
from tests.unit.serving.store_behaviour import FeedStoreBehaviour

T0_MS = 1_795_000_000_000
HOUR_MS = 3_600_000


@pytest.fixture
def store(tmp_path):
    s = SqliteOnlineStore(tmp_path / "online.db", default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()


@pytest.fixture
def second_store(tmp_path, store):
    s = SqliteOnlineStore(tmp_path / "online.db", default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()


class TestSqliteFeedStore(FeedStoreBehaviour):
    pass


def stored(videos: list[str], times: list[int], version: int = 1) -> FeatureRow:
    return FeatureRow("u1", {"videos": videos, "ms": times}, dt.datetime.fromtimestamp(T0_MS / 1000, dt.UTC), version)


def test_merging_appends_moves_repeats_to_the_end_and_keeps_the_newest():
    row = stored(["a", "b", "c"], [T0_MS, T0_MS + 1, T0_MS + 2], version=4)
    merged = merged_list(row, "u1", [("b", T0_MS + 3), ("d", T0_MS + 4)], T0_MS + 5, max_items=3, ttl_ms=HOUR_MS)
    # b seen again moves to the end; four videos, at most three kept: a (the oldest) goes.
    assert merged.values == {"videos": ["c", "b", "d"], "ms": [T0_MS + 2, T0_MS + 3, T0_MS + 4]}
    assert merged.version == 5 and merged.entity_key == "u1"
    assert merged.expires_at == dt.datetime.fromtimestamp((T0_MS + 5 + HOUR_MS) / 1000, dt.UTC)


def test_merging_drops_videos_older_than_the_ttl():
    row = stored(["old", "recent"], [T0_MS, T0_MS + 2 * HOUR_MS])
    merged = merged_list(
        row, "u1", [("new", T0_MS + 3 * HOUR_MS)], T0_MS + 3 * HOUR_MS, max_items=10, ttl_ms=2 * HOUR_MS
    )
    assert merged.values["videos"] == ["recent", "new"]
    assert merged_list(None, "u9", [("x", T0_MS)], T0_MS, 10, HOUR_MS).values == {"videos": ["x"], "ms": [T0_MS]}


def test_live_videos_are_the_ones_within_the_ttl():
    values = {"videos": ["a", "b"], "ms": [T0_MS, T0_MS + HOUR_MS]}
    assert live_videos(values, T0_MS + HOUR_MS + 1, HOUR_MS) == ["b"]
    assert live_videos(None, T0_MS, HOUR_MS) == [] and live_videos({}, T0_MS, HOUR_MS) == []


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_writer_persists_seen_and_engaged_videos_and_shows_them_before_they_land(tmp_path):
    path = tmp_path / "online.db"
    reader = SqliteOnlineStore(path)
    writer = StateWriter(lambda: SqliteOnlineStore(path), seen_max=3, recent_max=2, ttl_ms=HOUR_MS)
    now_ms = int(time.time() * 1000)
    writer.record("u1", ["v1", "v2"], ["v2"], now_ms)
    # Not started yet: nothing written, but this process already knows.
    assert writer.overlay("u1") == (["v1", "v2"], ["v2"])
    assert reader.read_many({SEEN_VIEW: ["u1"]}) == {SEEN_VIEW: {}}
    writer.start()
    try:
        wait_for(lambda: "u1" in reader.read_many({SEEN_VIEW: ["u1"]})[SEEN_VIEW])
        writer.record("u1", ["v3", "v4"], ["v3", "v4"], now_ms + 1)
        wait_for(lambda: reader.read_many({SEEN_VIEW: ["u1"]})[SEEN_VIEW]["u1"]["videos"] == ["v2", "v3", "v4"])
        rows = reader.read_many({SEEN_VIEW: ["u1"], RECENT_VIEW: ["u1"]})
        assert rows[RECENT_VIEW]["u1"]["videos"] == ["v3", "v4"]  # at most recent_max engaged videos
    finally:
        writer.close()
        reader.close()


def test_the_writer_keeps_videos_pending_while_the_store_is_down(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    attempts = []

    def unreachable():
        attempts.append(1)
        return SqliteOnlineStore(blocked / "online.db")  # its directory cannot be created

    writer = StateWriter(unreachable, seen_max=10, recent_max=5, ttl_ms=HOUR_MS)
    writer.record("u1", ["v1"], (), int(time.time() * 1000))
    assert not writer.flush() and not writer.flush()
    assert len(attempts) == 2  # reopened on every attempt
    assert writer.overlay("u1") == (["v1"], [])  # still excluded from this process's feeds
