"""The Redis online store on a real redis-server (started by conftest.py on a free port).

The store contract is in tests/contracts/online_store.py, shared with the SQLite store; this module
runs it on Redis and checks what is Redis's own: the key layout (rows and change logs), expiry
done by the server, atomic version checks between concurrent writers, and one round trip per
chunk of keys.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

import orjson
import pytest
import redis

from reelhouse.config import OnlineStoreConfig
from reelhouse.online import open_online_store
from reelhouse.online.redis import _CHUNK, RedisOnlineStore
from reelhouse.online.store import wall_clock_ms
from tests.contracts.online_store import DEFAULT_TTL_S, OnlineStoreBehaviour, now_s, row
from tests.integration.online.conftest import TEST_PREFIX

pytestmark = pytest.mark.integration


class TestRedisOnlineStore(OnlineStoreBehaviour):
    pass


def test_one_hash_per_view_and_key_under_the_prefix(store: RedisOnlineStore, redis_client: redis.Redis):
    t0 = now_s()
    store.write("video_features", [row("v1", 7, 10, t0)])

    assert set(redis_client.keys("*")) == {
        f"{TEST_PREFIX}video_features:v1".encode(),
        f"{TEST_PREFIX}~changes:video_features".encode(),  # the view's change log
    }
    stored = redis_client.hgetall(f"{TEST_PREFIX}video_features:v1")
    expires_ms = int(t0.timestamp() * 1000) + int(DEFAULT_TTL_S * 1000)
    assert stored == {
        b"v": b"7",
        b"t": str(int(t0.timestamp() * 1000)).encode(),
        b"e": str(expires_ms).encode(),
        b"p": orjson.dumps({"plays_1h": 10, "completion_rate_1h": 0.5}),
    }
    assert redis_client.pexpiretime(f"{TEST_PREFIX}video_features:v1") == expires_ms


def test_prefixes_keep_stores_apart(redis_url: str, redis_client: redis.Redis):
    t0 = now_s()
    blue, green = RedisOnlineStore(redis_url, key_prefix="blue:"), RedisOnlineStore(redis_url, key_prefix="green:")
    try:
        blue.write("video_features", [row("v1", 1, 1, t0)])
        assert green.read("video_features", ["v1"], now=t0)["v1"] is None
        assert green.write("video_features", [row("v1", 1, 2, t0)]) == 1  # its own version history
        assert blue.read("video_features", ["v1"], now=t0)["v1"].values["plays_1h"] == 1
    finally:
        blue.close()
        green.close()


def test_view_names_cannot_contain_the_separator(store: RedisOnlineStore):
    # "a:b" + "c" and "a" + "b:c" would be the same Redis key.
    with pytest.raises(ValueError, match="':'"):
        store.write("a:b", [row("c", 1, 1, now_s())])
    with pytest.raises(ValueError, match="':'"):
        store.read("a:b", ["c"])
    # Row "video_features" of a view "~changes" would be the change log of view "video_features".
    with pytest.raises(ValueError, match="'~'"):
        store.write("~changes", [row("video_features", 1, 1, now_s())])
    with pytest.raises(ValueError, match="'~'"):
        store.scan("~changes")


def test_the_change_log_scores_keys_with_the_writers_clock(store: RedisOnlineStore, redis_client: redis.Redis):
    t0 = now_s()
    before = wall_clock_ms()
    store.write("video_features", [row("v1", 1, 10, t0), row("v2", 1, 20, t0)])
    store.read_modify_write("user_seen", ["u1"], lambda key, current: row(key, 1, 1, t0))
    after = wall_clock_ms()

    for view, keys in (("video_features", {b"v1", b"v2"}), ("user_seen", {b"u1"})):
        logged = dict(redis_client.zrange(f"{TEST_PREFIX}~changes:{view}", 0, -1, withscores=True))
        assert logged.keys() == keys and all(before <= score <= after for score in logged.values())


def test_a_row_expired_on_arrival_is_not_written(store: RedisOnlineStore, redis_client: redis.Redis):
    t0 = now_s()
    assert store.write("video_features", [row("v1", 1, 10, t0, expires_at=t0 - dt.timedelta(seconds=1))]) == 0
    week_old = t0 - dt.timedelta(days=7)
    assert store.write("video_features", [row("v2", 1, 20, week_old)]) == 0  # feature time + default TTL passed
    assert redis_client.keys("*") == [f"{TEST_PREFIX}~changes:video_features".encode()]  # logged, not stored
    assert store.scan("video_features")[0] == {}
    assert store.purge_expired() == 2 and redis_client.dbsize() == 0


def test_an_expired_newer_version_removes_the_older_row(store: RedisOnlineStore, redis_client: redis.Redis):
    # As on SQLite, where the newer row replaces the older one and no read returns it.
    t0 = now_s()
    store.write("video_features", [row("v1", 1, 10, t0)])
    assert store.write("video_features", [row("v1", 2, 20, t0, expires_at=t0 - dt.timedelta(seconds=1))]) == 1
    assert not redis_client.exists(f"{TEST_PREFIX}video_features:v1")
    assert store.read("video_features", ["v1"])["v1"] is None


def test_redis_expires_rows_itself_and_the_purge_clears_their_log(store: RedisOnlineStore, redis_client: redis.Redis):
    # Lifetimes long enough for a busy machine to store the rows before they are due.
    now = dt.datetime.now(dt.UTC)
    soon = now + dt.timedelta(milliseconds=800)
    store.write("video_features", [row("v1", 1, 10, now_s(), expires_at=soon)])
    # Default TTL counted from the feature time: a row from almost an hour ago has ~800 ms left.
    store.write("video_features", [row("v2", 1, 20, now - dt.timedelta(seconds=DEFAULT_TTL_S - 0.8))])
    store.write("video_features", [row("v3", 1, 30, now_s())])
    assert 0 < redis_client.pttl(f"{TEST_PREFIX}video_features:v1") <= 800
    assert 0 < redis_client.pttl(f"{TEST_PREFIX}video_features:v2") <= 800

    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)

    got = store.read("video_features", ["v1", "v2", "v3"])
    assert got["v1"] is None and got["v2"] is None and got["v3"] is not None
    assert redis_client.exists(f"{TEST_PREFIX}video_features:v1", f"{TEST_PREFIX}video_features:v2") == 0
    changes = f"{TEST_PREFIX}~changes:video_features"
    assert redis_client.zcard(changes) == 3  # the log does not follow Redis's expiry ...
    assert store.purge_expired() == 2  # ... the purge does
    assert redis_client.zrange(changes, 0, -1) == [b"v3"]
    assert store.purge_expired() == 0
    assert set(redis_client.keys("*")) == {f"{TEST_PREFIX}video_features:v3".encode(), changes.encode()}


def test_a_purge_keeps_the_log_entry_of_a_row_written_while_it_runs(
    store: RedisOnlineStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
):
    # The row is gone when the purge checks it, and written again (row, then log entry) before the
    # purge removes the entry: without the second check the row would be live and unlogged.
    t0 = now_s()
    store.write("video_features", [row("v1", 1, 10, t0)])
    redis_client.delete(f"{TEST_PREFIX}video_features:v1")  # as Redis does when a row expires
    check_rows = store._exists
    checks = 0

    def exists_then_rewritten(view: str, keys: list[str]) -> list[bool]:
        nonlocal checks
        found = check_rows(view, keys)
        checks += 1
        if checks == 1:
            store.write("video_features", [row("v1", 2, 20, t0)])
        return found

    monkeypatch.setattr(store, "_exists", exists_then_rewritten)
    assert store.purge_expired() == 0
    assert store.scan("video_features")[0]["v1"][0] == 2


def test_a_purge_reads_only_its_own_prefix(redis_url: str, redis_client: redis.Redis):
    t0 = now_s()
    odd = RedisOnlineStore(redis_url, key_prefix="a*[b]?:")  # glob characters, taken literally
    other = RedisOnlineStore(redis_url, key_prefix="aXbY:")  # what the prefix would match as a pattern
    try:
        for store in (odd, other):
            store.write("video_features", [row("v1", 1, 10, t0)])
        redis_client.delete("aXbY:video_features:v1", "a*[b]?:video_features:v1")
        assert odd.purge_expired() == 1
        assert redis_client.zcard("aXbY:~changes:video_features") == 1
    finally:
        odd.close()
        other.close()


def test_a_replacement_without_expiry_clears_the_old_one(redis_url: str, redis_client: redis.Redis):
    t0 = now_s()
    store = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX, default_ttl_s=None)
    try:
        store.write("video_features", [row("v1", 1, 10, t0, expires_at=t0 + dt.timedelta(hours=1))])
        assert redis_client.pttl(f"{TEST_PREFIX}video_features:v1") > 0
        assert store.write("video_features", [row("v1", 2, 20, t0)]) == 1
        assert redis_client.pttl(f"{TEST_PREFIX}video_features:v1") == -1  # no expiry
        got = store.read("video_features", ["v1"], now=t0 + dt.timedelta(days=365))["v1"]
        assert got.version == 2 and got.expires_at is None
    finally:
        store.close()


def test_versions_compare_exactly_beyond_float_precision(store: RedisOnlineStore):
    t0 = now_s()
    big = 2**62  # epoch nanoseconds are this large; as Lua numbers (doubles), big and big + 1 are equal
    assert store.write("video_features", [row("v1", big + 1, 1, t0)]) == 1
    assert store.write("video_features", [row("v1", big, 2, t0)]) == 0
    assert store.write("video_features", [row("v1", big + 2, 3, t0)]) == 1
    assert store.read("video_features", ["v1"], now=t0)["v1"].version == big + 2

    assert store.write("video_features", [row("n", -10, 1, t0)]) == 1
    assert store.write("video_features", [row("n", -11, 2, t0)]) == 0
    assert store.write("video_features", [row("n", -9, 3, t0)]) == 1
    assert store.write("video_features", [row("n", 0, 4, t0)]) == 1
    assert store.write("video_features", [row("n", -1, 5, t0)]) == 0
    assert store.read("video_features", ["n"], now=t0)["n"].values["plays_1h"] == 4


def test_concurrent_writers_leave_the_newest_version(redis_url: str, redis_client: redis.Redis):
    # Two materialisation jobs racing on the same keys, interleaving versions: without a server-side
    # check-and-set, one job's older version could land after the other's newer one.
    t0 = now_s()
    keys = [f"v{i}" for i in range(20)]
    errors: list[BaseException] = []

    def write_versions(parity: int) -> None:
        writer = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX)
        try:
            for version in range(parity, 200, 2):
                writer.write("video_features", [row(key, version, version, t0) for key in keys])
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)
        finally:
            writer.close()

    reader = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX)
    threads = [threading.Thread(target=write_versions, args=(parity,)) for parity in (0, 1)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    while any(thread.is_alive() for thread in threads):
        got = reader.read("video_features", ["v0"], now=t0)["v0"]
        if got is not None:
            seen.append(got.version)
    for thread in threads:
        thread.join()
    try:
        assert not errors
        assert seen == sorted(seen), "a reader saw versions go backwards"
        assert {r.version for r in reader.read("video_features", keys, now=t0).values()} == {199}
    finally:
        reader.close()


def test_a_read_takes_one_round_trip_per_chunk(store: RedisOnlineStore, monkeypatch: pytest.MonkeyPatch):
    t0 = now_s()
    store.write("video_features", [row(f"v{i}", 1, i, t0) for i in range(0, 2_000, 2)])
    executed: list[int] = []
    make_pipeline = store._client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted_execute(*a, **kw):
            executed.append(len(pipe.command_stack))
            return execute(*a, **kw)

        pipe.execute = counted_execute
        return pipe

    monkeypatch.setattr(store._client, "pipeline", counting_pipeline)

    got = store.read("video_features", [f"v{i}" for i in range(2_000)], now=t0)

    assert len(executed) == math.ceil(2_000 / _CHUNK) and sum(executed) == 2_000
    assert got["v1000"].values["plays_1h"] == 1000 and got["v1001"] is None


def test_close_releases_the_connections(redis_url: str, redis_client: redis.Redis):
    def clients() -> int:
        return len(redis_client.client_list())

    before = clients()
    store = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX)
    store.read("video_features", ["v1"])
    assert clients() == before + 1
    store.close()
    deadline = time.monotonic() + 5
    while clients() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert clients() == before


def test_the_factory_opens_the_configured_redis_store(redis_url: str, redis_client: redis.Redis):
    config = OnlineStoreConfig(
        type="redis",
        redis_url=redis_url,
        key_prefix="factory:",
        ttl_s=10,
        redis_socket_timeout_s=0.7,
        redis_connect_timeout_s=0.9,
    )
    store = open_online_store(config)
    try:
        assert isinstance(store, RedisOnlineStore)
        assert (store.url, store.key_prefix, store.default_ttl_s) == (redis_url, "factory:", 10)
        t0 = now_s()
        assert store.write("video_features", [row("v1", 1, 10, t0)]) == 1
        assert store.read("video_features", ["v1"], now=t0)["v1"].expires_at == t0 + dt.timedelta(seconds=10)
        assert set(redis_client.keys("*")) == {b"factory:video_features:v1", b"factory:~changes:video_features"}
        connection = store._pool.make_connection()  # the configured timeouts, not redis-py's defaults
        assert (connection.socket_timeout, connection.socket_connect_timeout) == (
            config.redis_socket_timeout_s,
            config.redis_connect_timeout_s,
        )
    finally:
        store.close()
