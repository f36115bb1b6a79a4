"""User state for the feed: bounded "seen" lists, the SQLite store's batched and atomic calls, the writer."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from reelhouse.online import FeatureRow, SqliteOnlineStore
from reelhouse.serving.metrics import ServingMetrics
from reelhouse.serving.user_state import RECENT_VIEW, SEEN_VIEW, StateWriter, live_videos, merged_list
from tests.contracts.feed_store import FeedStoreBehaviour
from tests.contracts.online_store import DEFAULT_TTL_S

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


class UnreachableStore:
    """Opening the store always fails, as with a store that is down."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self) -> SqliteOnlineStore:
        self.attempts += 1
        raise ConnectionError("the store is down")


def dropped(metrics: ServingMetrics, reason: str) -> float:
    return metrics.state_dropped_videos.labels(reason)._value.get()


def held_in_entries(writer: StateWriter) -> int:
    """What the writer's entries hold, counted afresh (the writer keeps a running total)."""
    return sum(len(entry.seen.items) + len(entry.engaged.items) for entry in writer._pending.values())


def test_a_users_lists_keep_their_newest_videos_while_the_store_is_down():
    metrics = ServingMetrics()
    writer = StateWriter(UnreachableStore(), seen_max=5, recent_max=2, ttl_ms=HOUR_MS, metrics=metrics)
    for page in range(3):
        writer.record("u1", [f"v{page * 4 + i}" for i in range(4)], [f"e{page}"], T0_MS + page)
        assert not writer.flush()

    # 12 seen, 3 engaged recorded; a row keeps the newest 5 and 2, so the buffer keeps no more.
    assert writer.overlay("u1") == (["v7", "v8", "v9", "v10", "v11"], ["e1", "e2"])
    assert writer.held_videos == held_in_entries(writer) == 7
    assert dropped(metrics, "trimmed") == 7 + 1 and dropped(metrics, "evicted") == 0


def test_the_buffer_stays_bounded_and_counts_every_dropped_video():
    metrics = ServingMetrics()
    writer = StateWriter(
        UnreachableStore(), seen_max=10, recent_max=5, ttl_ms=HOUR_MS, metrics=metrics, max_pending_videos=50
    )
    for user in range(20):  # 200 videos for a buffer of 50
        writer.record(f"u{user}", [f"v{user}-{i}" for i in range(10)], (), T0_MS + user)
        writer.flush()
        assert writer.held_videos == held_in_entries(writer) <= 50

    # The least recently active users went, whole: 15 users, 150 videos, none of them written.
    assert dropped(metrics, "evicted") == 150 and metrics.state_writes.labels("dropped")._value.get() == 15
    assert writer.overlay("u0") == ([], []) and len(writer.overlay("u19")[0]) == 10
    assert writer.held_videos == 50

    by_users = StateWriter(UnreachableStore(), seen_max=10, recent_max=5, ttl_ms=HOUR_MS, max_pending_users=3)
    for user in range(5):
        by_users.record(f"u{user}", ["v"], (), T0_MS)
    assert [u for u in ("u0", "u1", "u2", "u3", "u4") if by_users.overlay(u)[0]] == ["u2", "u3", "u4"]


def test_what_the_bounded_buffer_kept_is_written_once_the_store_is_back(tmp_path):
    path = tmp_path / "online.db"
    down = True

    def open_store() -> SqliteOnlineStore:
        if down:
            raise ConnectionError("the store is down")
        return SqliteOnlineStore(path)

    writer = StateWriter(open_store, seen_max=3, recent_max=2, ttl_ms=HOUR_MS, max_pending_videos=6)
    now_ms = int(time.time() * 1000)
    for user in range(4):
        writer.record(f"u{user}", [f"v{user}-{i}" for i in range(4)], (), now_ms + user)
    assert not writer.flush()
    down = False
    assert writer.flush()

    reader = SqliteOnlineStore(path)
    try:
        rows = reader.read_many({SEEN_VIEW: ["u0", "u1", "u2", "u3"]})[SEEN_VIEW]
    finally:
        reader.close()
    # Each user kept its newest 3 videos; 6 videos fit, so the two most recent users stayed.
    assert rows == {
        "u2": {"videos": ["v2-1", "v2-2", "v2-3"], "ms": [now_ms + 2] * 3},
        "u3": {"videos": ["v3-1", "v3-2", "v3-3"], "ms": [now_ms + 3] * 3},
    }


class RecordingDuringWrites:
    """A real SQLite store whose writes let ``during_write`` run while they are in flight, as a request
    recording videos between the writer's snapshot and the end of its store call would."""

    def __init__(self, path, during_write) -> None:  # noqa: ANN001
        self._store = SqliteOnlineStore(path)
        self.during_write = during_write

    def read_modify_write(self, view, keys, update, now=None):  # noqa: ANN001, ANN201
        during, self.during_write = self.during_write, lambda: None  # once
        during()
        return self._store.read_modify_write(view, keys, update, now)

    def close(self) -> None:
        self._store.close()


def stored_seen(path, user: str) -> list[str]:  # noqa: ANN001
    reader = SqliteOnlineStore(path)
    try:
        return reader.read_many({SEEN_VIEW: [user]})[SEEN_VIEW][user]["videos"]
    finally:
        reader.close()


def test_videos_recorded_and_trimmed_during_a_write_are_written_next(tmp_path):
    path = tmp_path / "online.db"
    now_ms = int(time.time() * 1000)
    writer: StateWriter

    def request_during_write() -> None:  # 4 more videos: with seen_max 4, the 2 being written are trimmed
        writer.record("u1", ["c", "d", "e", "f"], (), now_ms + 1)

    writer = StateWriter(
        lambda: RecordingDuringWrites(path, request_during_write), seen_max=4, recent_max=2, ttl_ms=HOUR_MS
    )
    writer.record("u1", ["a", "b"], (), now_ms)
    assert writer.flush()  # wrote a, b; c..f arrived meanwhile and stay unwritten
    assert stored_seen(path, "u1") == ["a", "b"]
    assert writer.overlay("u1") == (["c", "d", "e", "f"], [])
    assert writer.held_videos == held_in_entries(writer) == 4
    assert writer.flush()
    assert stored_seen(path, "u1") == ["c", "d", "e", "f"]  # newest 4 of a..f; nothing written twice or lost
    assert not writer._dirty


def test_a_user_evicted_and_recorded_again_during_a_write_keeps_the_new_videos(tmp_path):
    path = tmp_path / "online.db"
    now_ms = int(time.time() * 1000)
    writer: StateWriter

    def requests_during_write() -> None:
        writer.record("u2", ["x"], (), now_ms)  # the buffer holds 2 users: u1 goes
        writer.record("u3", ["y"], (), now_ms)
        writer.record("u1", ["new"], (), now_ms + 1)  # u1 again, a new entry

    writer = StateWriter(
        lambda: RecordingDuringWrites(path, requests_during_write),
        seen_max=4,
        recent_max=2,
        ttl_ms=HOUR_MS,
        max_pending_users=2,
    )
    writer.record("u1", ["old"], (), now_ms)
    assert writer.flush()
    assert writer.overlay("u1") == (["new"], [])  # the finished write did not mark the new entry written
    assert "u1" in writer._dirty and writer.held_videos == held_in_entries(writer)
    while writer._dirty:
        assert writer.flush()
    assert stored_seen(path, "u1") == ["old", "new"]
