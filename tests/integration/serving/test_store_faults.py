"""What the service's store housekeeping holds to with real stores: the user-state buffer stays
bounded while a real Redis hangs (paused with SIGSTOP) and writes what it kept once it answers,
and the feed service purges expired rows from its SQLite file on its own.

(A hung Redis under the running feed service is in test_redis_store.py.)
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from contextlib import closing

import pytest

from reelhouse.online.redis import RedisOnlineStore
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.serving.metrics import ServingMetrics
from reelhouse.serving.server import ServingServer
from reelhouse.serving.user_state import SEEN_VIEW, StateWriter
from tests.contracts.online_store import row
from tests.integration.serving.conftest import ServingEnvironment, serving_config
from tests.integration.serving.private_redis import PrivateRedis

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def wait_until(condition, timeout_s: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)
    return found


def test_the_state_buffer_stays_bounded_while_redis_hangs_and_is_written_after(tmp_path):
    server_redis = PrivateRedis(tmp_path)
    metrics = ServingMetrics()
    writer = StateWriter(
        lambda: RedisOnlineStore(server_redis.url, key_prefix="state:"),
        seen_max=20,
        recent_max=5,
        ttl_ms=HOUR_MS,
        metrics=metrics,
        max_pending_videos=200,
    )
    reader = RedisOnlineStore(server_redis.url, key_prefix="state:")
    users = [f"u{i}" for i in range(100)]
    now_ms = int(time.time() * 1000)
    try:
        server_redis.start()
        writer.start()
        with server_redis.paused():
            for i, user in enumerate(users):  # 1,000 videos for a buffer of 200
                writer.record(user, [f"{user}-v{j}" for j in range(10)], (), now_ms + i)
                assert writer.held_videos <= 200
            wait_until(lambda: metrics.state_writes.labels("failed")._value.get() >= 1)  # it tried, and failed
            # Nothing reached the store, so every video that went was lost, and counted: the 80 least
            # recently active users, 10 videos each.
            assert metrics.state_dropped_videos.labels("evicted")._value.get() == 800
            assert metrics.state_writes.labels("dropped")._value.get() == 80
        # Resumed: the 20 users the buffer kept are written (after the writer's backoff), the others are not.
        kept = users[80:]
        wait_until(lambda: len(reader.read_many({SEEN_VIEW: kept})[SEEN_VIEW]) == len(kept))
        rows = reader.read_many({SEEN_VIEW: users})[SEEN_VIEW]
        assert rows.keys() == set(kept)
        assert rows["u99"]["videos"] == [f"u99-v{j}" for j in range(10)]
    finally:
        writer.close()
        reader.close()
        server_redis.stop()


def test_the_service_purges_expired_rows_from_its_sqlite_file(serving_env: ServingEnvironment, tmp_path):
    path = tmp_path / "online.db"
    config = serving_config(serving_env.config, online_store={"path": path, "purge_interval_s": 0.2})

    def stored(prefix: str) -> int:
        with closing(sqlite3.connect(path)) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM online_features WHERE entity_key LIKE ?", (f"{prefix}%",)
            ).fetchone()
            return count

    with ServingServer(config) as server:
        store = SqliteOnlineStore(path)
        try:
            now = dt.datetime.now(dt.UTC)
            short = [row(f"short{i}", 1, i, now, expires_at=now + dt.timedelta(milliseconds=500)) for i in range(5)]
            assert store.write("video_features", short) == 5
            assert store.write("video_features", [row(f"long{i}", 1, i, now) for i in range(3)], ttl_s=3600) == 3
        finally:
            store.close()
        wait_until(lambda: stored("short") == 0)  # SQLite keeps expired rows until purged: the service did
        assert stored("long") == 3
        assert server.state.metrics.store_purged._value.get() >= 5
