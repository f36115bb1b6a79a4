"""What the feed needs from any online store: ``read_many``, ``read_modify_write`` and ``scan``.

A test module subclasses :class:`FeedStoreBehaviour` as ``Test...`` and provides a ``store`` fixture
(an empty store, default TTL one hour) and ``second_store`` (another client of the same store, as a
second service process would have). Times come from the wall clock, as in tests/contracts/online_store.py.
"""

from __future__ import annotations

import datetime as dt
import threading

import orjson
import pytest

from reelhouse.online import FeatureRow, OnlineStore
from reelhouse.online.store import SCAN_OVERLAP_MS, wall_clock_ms
from reelhouse.serving.user_state import merged_list
from tests.contracts.online_store import DEFAULT_TTL_S, now_s, row


def append(video: str, at_ms: int):
    def update(key: str, current: FeatureRow | None) -> FeatureRow:
        return merged_list(current, key, [(video, at_ms)], at_ms, max_items=1000, ttl_ms=3_600_000)

    return update


class FeedStoreBehaviour:
    def test_read_many_reads_several_views_and_leaves_out_missing_and_expired(self, store: OnlineStore):
        t0 = now_s()
        store.write("video_features", [row("v1", 1, 10, t0), row("v2", 1, 20, t0)])
        store.write("user_features", [row("u1", 1, 5, t0)])
        store.write("video_features", [row("gone", 1, 1, t0, expires_at=t0 + dt.timedelta(seconds=30))])

        got = store.read_many(
            {"video_features": ["v1", "v404", "v2", "v1", "gone"], "user_features": ["u1"], "empty_view": ["x"]},
            now=t0 + dt.timedelta(minutes=1),
        )

        assert got == {
            "video_features": {
                "v1": {"plays_1h": 10, "completion_rate_1h": 0.5},
                "v2": {"plays_1h": 20, "completion_rate_1h": 0.5},
            },
            "user_features": {"u1": {"plays_1h": 5, "completion_rate_1h": 0.5}},
            "empty_view": {},
        }
        assert store.read_many({}) == {} and store.read_many({"video_features": []}) == {"video_features": {}}

    def test_read_many_takes_any_key_and_many_of_them(self, store: OnlineStore):
        t0 = now_s()
        odd = ["a\x1eb", "c\x1fd", "e|f", "ünï"]  # separators a store might use internally, non-ASCII
        many = [f"v{i}" for i in range(700)]  # beyond one chunk of keys
        store.write("video_features", [row(key, 1, i, t0) for i, key in enumerate(odd + many)])
        got = store.read_many({"video_features": [*odd, *many, "absent"]}, now=t0)["video_features"]
        assert set(got) == set(odd + many)
        assert [got[key]["plays_1h"] for key in odd] == [0, 1, 2, 3]
        assert got["v699"]["plays_1h"] == 703

    def test_read_many_hands_each_row_to_the_decoder_with_its_version(self, store: OnlineStore):
        t0 = now_s()
        store.write("video_features", [row("v1", 7, 10, t0)])
        seen = []

        def decode(view: str, key: str, version: int, payload: bytes) -> object:
            seen.append((view, key, version))
            return orjson.loads(payload)["plays_1h"]

        assert store.read_many({"video_features": ["v1", "v2"]}, now=t0, decode=decode) == {
            "video_features": {"v1": 10}
        }
        assert seen == [("video_features", "v1", 7)]

    def test_read_modify_write_sees_the_stored_row_and_replaces_it(self, store: OnlineStore):
        t0 = now_s()
        ms = int(t0.timestamp() * 1000)
        assert store.read_modify_write("user_seen", ["u1"], append("v1", ms)) == 1
        assert store.read_modify_write("user_seen", ["u1", "u2"], append("v2", ms + 1)) == 2
        got = store.read_many({"user_seen": ["u1", "u2"]})["user_seen"]
        assert got["u1"] == {"videos": ["v1", "v2"], "ms": [ms, ms + 1]}
        assert got["u2"] == {"videos": ["v2"], "ms": [ms + 1]}
        current = store.read("user_seen", ["u1"])["u1"]
        assert current is not None and current.version == 2  # each update counts up from the stored version

    def test_read_modify_write_can_leave_a_key_alone(self, store: OnlineStore):
        assert store.read_modify_write("user_seen", ["u1"], lambda key, current: None) == 0
        assert store.read_many({"user_seen": ["u1"]}) == {"user_seen": {}}

    def test_an_update_replaces_a_row_whatever_its_version(self, store: OnlineStore):
        t0 = now_s()
        store.write("user_seen", [FeatureRow("u1", {"videos": ["old"], "ms": [1]}, t0, 10**12)])
        replaced = FeatureRow("u1", {"videos": ["new"], "ms": [2]}, t0, 1)
        assert store.read_modify_write("user_seen", ["u1"], lambda key, current: replaced) == 1
        assert store.read_many({"user_seen": ["u1"]})["user_seen"]["u1"] == {"videos": ["new"], "ms": [2]}

    def test_an_update_for_another_key_is_refused(self, store: OnlineStore):
        t0 = now_s()
        with pytest.raises(ValueError, match="returned a row of"):
            store.read_modify_write("user_seen", ["u1"], lambda key, current: FeatureRow("u2", {}, t0, 1))

    def test_concurrent_appends_from_two_clients_are_never_lost(self, store: OnlineStore, second_store: OnlineStore):
        ms = int(now_s().timestamp() * 1000)
        per_writer = 40

        def writer(client: OnlineStore, prefix: str) -> None:
            for i in range(per_writer):
                client.read_modify_write("user_seen", ["u1"], append(f"{prefix}{i}", ms + i))

        threads = [
            threading.Thread(target=writer, args=(client, prefix))
            for client, prefix in ((store, "a"), (second_store, "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        videos = store.read_many({"user_seen": ["u1"]})["user_seen"]["u1"]["videos"]
        assert sorted(videos) == sorted([f"a{i}" for i in range(per_writer)] + [f"b{i}" for i in range(per_writer)])

    def test_a_full_scan_returns_every_live_row_of_the_view(self, store: OnlineStore):
        t0 = now_s()
        store.write("video_features", [row(f"v{i}", 3, i, t0) for i in range(700)])  # beyond one chunk
        store.write("video_features", [row("gone", 1, 1, t0, expires_at=t0 + dt.timedelta(seconds=30))])
        store.write("user_features", [row("u1", 1, 5, t0)])  # another view

        rows, _ = store.scan("video_features", now=t0 + dt.timedelta(minutes=1))

        assert set(rows) == {f"v{i}" for i in range(700)}  # "gone" expired at t0 + 30 s
        version, expires_ms, payload = rows["v42"]
        assert version == 3 and orjson.loads(payload) == {"plays_1h": 42, "completion_rate_1h": 0.5}
        assert expires_ms == int(t0.timestamp() * 1000) + int(DEFAULT_TTL_S * 1000)
        assert store.scan("empty_view") == ({}, 0)

    def test_a_scan_from_the_cursor_returns_what_was_written_since(self, store: OnlineStore):
        t0 = now_s()
        before_ms = wall_clock_ms()
        store.write("video_features", [row("v1", 1, 10, t0), row("v2", 1, 20, t0)])
        after_ms = wall_clock_ms()
        _, cursor = store.scan("video_features")
        scanned_ms = wall_clock_ms()
        # Just written: the clock less the overlap that catches late writers, not past the rows.
        assert before_ms - SCAN_OVERLAP_MS <= cursor <= min(after_ms + 1, scanned_ms - SCAN_OVERLAP_MS)

        store.write("video_features", [row("v1", 2, 11, t0), row("v3", 1, 30, t0)])
        store.write("video_features", [row("v2", 0, 99, t0)])  # an older version: refused, v2 keeps its values
        rows, next_cursor = store.scan("video_features", since=cursor)

        assert {"v1", "v3"} <= set(rows)  # v2 may come again: callers keep the highest version per key
        assert rows["v1"][0] == 2 and orjson.loads(rows["v3"][2])["plays_1h"] == 30
        if "v2" in rows:
            assert rows["v2"][0] == 1 and orjson.loads(rows["v2"][2])["plays_1h"] == 20
        assert next_cursor >= cursor  # never goes back
        assert store.scan("video_features", since=next_cursor)[1] >= next_cursor
        # Nothing is stamped an hour from now: a cursor there finds nothing.
        assert store.scan("video_features", since=after_ms + 3_600_000) == ({}, after_ms + 3_600_000)

    def test_a_scan_leaves_out_rows_expired_since_they_were_written(self, store: OnlineStore):
        t0 = now_s()
        store.write("video_features", [row("v1", 1, 10, t0, expires_at=t0 + dt.timedelta(minutes=5))])
        store.write("video_features", [row("v2", 1, 20, t0)])
        _, cursor = store.scan("video_features")

        later = t0 + dt.timedelta(minutes=10)
        assert set(store.scan("video_features", now=later)[0]) == {"v2"}
        assert set(store.scan("video_features", since=cursor, now=later)[0]) <= {"v2"}

    def test_rows_updated_in_place_are_scanned_like_written_ones(self, store: OnlineStore):
        ms = int(now_s().timestamp() * 1000)
        store.read_modify_write("user_seen", ["u1"], append("v1", ms))
        rows, cursor = store.scan("user_seen")
        assert orjson.loads(rows["u1"][2])["videos"] == ["v1"]

        store.read_modify_write("user_seen", ["u1", "u2"], append("v2", ms + 1))
        rows, _ = store.scan("user_seen", since=cursor)
        assert orjson.loads(rows["u1"][2])["videos"] == ["v1", "v2"] and set(rows) == {"u1", "u2"}
