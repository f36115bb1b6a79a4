"""The embedded online store on a real SQLite file (no server involved)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from reelhouse.config import OnlineStoreConfig
from reelhouse.online import FeatureRow, SqliteOnlineStore, open_online_store

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def row(key: str, version: int, plays: int, at: dt.datetime = T0) -> FeatureRow:
    return FeatureRow(entity_key=key, values={"plays_1h": plays, "completion_rate_1h": 0.5}, feature_time=at, version=version)


@pytest.fixture
def store(tmp_path):
    s = SqliteOnlineStore(tmp_path / "online.db", default_ttl_s=3600)
    yield s
    s.close()


def test_a_batched_read_returns_every_key_and_none_for_missing(store):
    store.write("video_features", [row("v1", 1, 10), row("v2", 1, 20)])

    got = store.read("video_features", ["v1", "v2", "v404"], now=T0)

    assert got["v1"].values == {"plays_1h": 10, "completion_rate_1h": 0.5}
    assert got["v2"].values["plays_1h"] == 20
    assert got["v404"] is None
    assert got["v1"].feature_time == T0 and got["v1"].version == 1


def test_an_older_version_never_replaces_a_newer_one(store):
    # A replayed backfill (version 3) arriving after the stream's fresher value (version 5).
    assert store.write("video_features", [row("v1", 5, 50)]) == 1
    assert store.write("video_features", [row("v1", 3, 30)]) == 0
    assert store.write("video_features", [row("v1", 5, 99)]) == 0  # same version: first write wins

    assert store.read("video_features", ["v1"], now=T0)["v1"].values["plays_1h"] == 50
    assert store.write("video_features", [row("v1", 6, 60)]) == 1
    assert store.read("video_features", ["v1"], now=T0)["v1"].values["plays_1h"] == 60


def test_rows_expire_after_their_ttl_and_can_be_purged(store):
    store.write("video_features", [row("v1", 1, 10)])  # default TTL: one hour after T0
    store.write("video_features", [row("v2", 1, 20)], ttl_s=60)

    later = T0 + dt.timedelta(minutes=30)
    got = store.read("video_features", ["v1", "v2"], now=later)
    assert got["v1"] is not None and got["v2"] is None  # v2 lived one minute
    assert store.purge_expired(now=later) == 1
    assert store.read("video_features", ["v1"], now=T0 + dt.timedelta(hours=2))["v1"] is None


def test_views_are_separate_namespaces(store):
    store.write("video_features", [row("x", 1, 1)])
    store.write("user_features", [row("x", 1, 2)])
    assert store.read("video_features", ["x"], now=T0)["x"].values["plays_1h"] == 1
    assert store.read("user_features", ["x"], now=T0)["x"].values["plays_1h"] == 2


def test_reads_of_more_keys_than_one_statement_takes(store):
    store.write("video_features", [row(f"v{i}", 1, i) for i in range(1_234)])
    keys = [f"v{i}" for i in range(1_300)]
    got = store.read("video_features", keys, now=T0)
    assert sum(r is not None for r in got.values()) == 1_234
    assert got["v1233"].values["plays_1h"] == 1233 and got["v1299"] is None


def test_keys_are_data_not_sql(store):
    nasty = "v1') OR 1=1; DROP TABLE online_features; --"
    store.write("video_features", [row(nasty, 1, 7), row("v2", 1, 8)])
    assert store.read("video_features", [nasty], now=T0)[nasty].values["plays_1h"] == 7
    assert store.read("video_features", ["v2"], now=T0)["v2"] is not None


def test_naive_times_are_rejected(store):
    with pytest.raises(ValueError, match="naive"):
        store.write("video_features", [row("v1", 1, 1, at=dt.datetime(2026, 11, 21))])


def test_a_reader_and_a_writer_share_the_file(tmp_path):
    # WAL mode: the feed service reads while a materialisation job writes, from another connection.
    writer = SqliteOnlineStore(tmp_path / "online.db")
    reader = SqliteOnlineStore(tmp_path / "online.db")
    errors = []

    def write_many():
        try:
            for version in range(1, 200):
                writer.write("video_features", [row("v1", version, version)])
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    thread = threading.Thread(target=write_many)
    thread.start()
    seen = []
    while thread.is_alive():
        got = reader.read("video_features", ["v1"], now=T0)["v1"]
        if got is not None:
            seen.append(got.version)
    thread.join()
    assert not errors
    assert seen == sorted(seen), "a reader saw versions go backwards"
    assert reader.read("video_features", ["v1"], now=T0)["v1"].version == 199
    writer.close()
    reader.close()


def test_the_factory_opens_the_configured_store(tmp_path):
    store = open_online_store(OnlineStoreConfig(type="sqlite", path=tmp_path / "f.db", ttl_s=10))
    try:
        assert isinstance(store, SqliteOnlineStore) and store.default_ttl_s == 10
    finally:
        store.close()
