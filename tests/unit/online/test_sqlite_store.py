"""The embedded online store on a real SQLite file (no server involved).

The store contract is in tests/online_behaviour.py, shared with the Redis store; this module
runs it on SQLite and adds what only SQLite has (an explicit purge, two connections on one file).
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from reelhouse.config import OnlineStoreConfig
from reelhouse.online import SqliteOnlineStore, open_online_store
from tests.online_behaviour import DEFAULT_TTL_S, OnlineStoreBehaviour, now_s, row


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
