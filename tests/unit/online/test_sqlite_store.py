"""The embedded online store on a real SQLite file (no server involved).

The store contract is in tests/contracts/online_store.py, shared with the Redis store; this module
runs it on SQLite and adds what only SQLite has (an explicit purge, two connections on one file).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from contextlib import closing

import orjson
import pytest

from reelhouse.config import OnlineStoreConfig
from reelhouse.online import SqliteOnlineStore, open_online_store
from reelhouse.online import sqlite as sqlite_store
from tests.contracts.online_store import DEFAULT_TTL_S, OnlineStoreBehaviour, now_s, row


@pytest.fixture
def store(tmp_path):
    s = SqliteOnlineStore(tmp_path / "online.db", default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()


class TestSqliteOnlineStore(OnlineStoreBehaviour):
    pass


def test_expired_rows_stay_until_purged(store):
    t0 = now_s()
    store.write("video_features", [row("v1", 1, 10, t0)])  # default TTL: one hour after t0
    store.write("video_features", [row("v2", 1, 20, t0)], ttl_s=60)

    later = t0 + dt.timedelta(minutes=30)
    assert store.purge_expired(now=later) == 1
    assert store.purge_expired(now=later) == 0
    assert store.read("video_features", ["v1"], now=later)["v1"] is not None
    # A purged key takes any version again: the version check only sees stored rows.
    assert store.write("video_features", [row("v2", 1, 21, later)]) == 1


def test_a_purge_deletes_in_batches_until_nothing_expired_is_left(store, monkeypatch):
    monkeypatch.setattr(sqlite_store, "_PURGE_BATCH", 3)
    t0 = now_s()
    store.write("video_features", [row(f"v{i}", 1, i, t0) for i in range(7)], ttl_s=60)
    store.write("video_features", [row("kept", 1, 0, t0)])

    later = t0 + dt.timedelta(minutes=30)
    assert store.purge_expired(now=later) == 7  # three batches: 3, 3, 1
    assert store.scan("video_features", now=t0)[0].keys() == {"kept"}


def test_a_refused_older_version_leaves_the_write_stamp_alone(tmp_path):
    t0 = now_s()
    store = SqliteOnlineStore(tmp_path / "online.db")

    def stamp() -> int:
        with closing(sqlite3.connect(tmp_path / "online.db")) as db:
            return db.execute("SELECT written_ms FROM online_features").fetchone()[0]

    try:
        store.write("video_features", [row("v1", 5, 50, t0)])
        first = stamp()
        assert first > 0
        assert store.write("video_features", [row("v1", 4, 40, t0)]) == 0
        assert stamp() == first
    finally:
        store.close()


# The table as the store created it before rows carried a write stamp (written_ms).
_SCHEMA_BEFORE_SCAN = """
CREATE TABLE online_features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    feature_time_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    payload BLOB NOT NULL,
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID;
CREATE INDEX online_features_expiry ON online_features (expires_at_ms);
"""


def test_a_file_from_before_write_stamps_is_migrated_on_open(tmp_path):
    path = tmp_path / "old.db"
    t0 = now_s()
    with closing(sqlite3.connect(path)) as db:
        db.executescript(_SCHEMA_BEFORE_SCAN)
        db.execute(
            "INSERT INTO online_features VALUES ('video_features', 'old', 1, ?, NULL, ?)",
            (int(t0.timestamp() * 1000), orjson.dumps({"plays_1h": 1})),
        )
        db.commit()

    first, second = SqliteOnlineStore(path), SqliteOnlineStore(path)  # the second finds the column there
    try:
        rows, cursor = first.scan("video_features")
        assert rows.keys() == {"old"} and rows["old"][0] == 1  # stamped 0: a full scan returns it
        second.write("video_features", [row("new", 1, 2, t0)])
        assert "new" in first.scan("video_features", since=cursor)[0]  # "old" may come again, or not
        assert second.scan("video_features", since=1)[0].keys() == {"new"}
    finally:
        first.close()
        second.close()
    with closing(sqlite3.connect(path)) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "online_features_written" in indexes


def test_a_reader_and_a_writer_share_the_file(tmp_path):
    # WAL mode: the feed service reads while a materialisation job writes, from another connection.
    t0 = now_s()
    writer = SqliteOnlineStore(tmp_path / "online.db")
    reader = SqliteOnlineStore(tmp_path / "online.db")
    errors = []

    def write_many():
        try:
            for version in range(1, 200):
                writer.write("video_features", [row("v1", version, version, t0)])
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    thread = threading.Thread(target=write_many)
    thread.start()
    seen = []
    while thread.is_alive():
        got = reader.read("video_features", ["v1"], now=t0)["v1"]
        if got is not None:
            seen.append(got.version)
    thread.join()
    assert not errors
    assert seen == sorted(seen), "a reader saw versions go backwards"
    assert reader.read("video_features", ["v1"], now=t0)["v1"].version == 199
    writer.close()
    reader.close()


def test_the_factory_opens_the_configured_store(tmp_path):
    store = open_online_store(OnlineStoreConfig(type="sqlite", path=tmp_path / "f.db", ttl_s=10))
    try:
        assert isinstance(store, SqliteOnlineStore) and store.default_ttl_s == 10
    finally:
        store.close()


def test_the_config_knows_only_the_stores_there_are():
    assert OnlineStoreConfig().type == "sqlite"
    redis = OnlineStoreConfig(type="redis", redis_url="rediss://cache:6380/2", key_prefix="rh:")
    assert (redis.redis_url, redis.key_prefix) == ("rediss://cache:6380/2", "rh:")
    with pytest.raises(ValueError, match="type"):
        OnlineStoreConfig(type="memcached")
    with pytest.raises(ValueError, match="redis_host"):
        OnlineStoreConfig(type="redis", redis_host="cache")
