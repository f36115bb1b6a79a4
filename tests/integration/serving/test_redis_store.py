"""The feed's store calls (``read_many``, ``read_modify_write``) on a real Redis server, and the feed
service with its user state and features in Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from reelhouse.online.redis import RedisOnlineStore
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.serving.features import VIEWS
from reelhouse.serving.server import ServingServer
from tests.integration.conftest import free_ports
from tests.integration.online.conftest import TEST_PREFIX, redis_client, redis_url  # noqa: F401 - fixtures
from tests.integration.serving.conftest import ServingEnvironment, serving_config
from tests.online_behaviour import DEFAULT_TTL_S
from tests.unit.serving.store_behaviour import FeedStoreBehaviour

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url: str, redis_client: redis.Redis) -> Iterator[RedisOnlineStore]:  # noqa: F811
    s = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX, default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()


@pytest.fixture
def second_store(redis_url: str, store: RedisOnlineStore) -> Iterator[RedisOnlineStore]:  # noqa: F811
    s = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX, default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()


class TestRedisFeedStore(FeedStoreBehaviour):
    pass


def copy_features(serving_env: ServingEnvironment, redis_url: str, prefix: str) -> None:  # noqa: F811
    """The environment's feature rows, from its SQLite store into Redis."""
    source = SqliteOnlineStore(serving_env.config.online_store.path)
    target = RedisOnlineStore(redis_url, key_prefix=prefix)
    try:
        keys = {
            VIEWS["video"]: serving_env.videos,
            VIEWS["user"]: serving_env.users,
            VIEWS["user_topic"]: [
                f"{u}|{t}" for u in serving_env.users for t in sorted(set(serving_env.topic_of.values()))
            ],
        }
        for view, wanted in keys.items():
            target.write(view, [row for row in source.read(view, wanted).values() if row is not None])
    finally:
        source.close()
        target.close()


def redis_config(serving_env: ServingEnvironment, url: str, prefix: str):  # noqa: ANN201 - a ReelhouseConfig
    return serving_config(serving_env.config, online_store={"type": "redis", "redis_url": url, "key_prefix": prefix})


def test_the_feed_service_on_a_redis_store(serving_env: ServingEnvironment, redis_url: str, redis_client):  # noqa: F811
    copy_features(serving_env, redis_url, "feed:")
    config = redis_config(serving_env, redis_url, "feed:")
    user = serving_env.users[37]
    with ServingServer(config) as server:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        first = httpx.get(f"{server.url}/v1/feed", params={"user_id": user, "k": 10}).json()
        assert first["degraded"] == [] and first["ranker"].startswith(serving_env.registered_model)
    with ServingServer(config) as server:  # another process: the seen videos come from Redis
        again = httpx.get(f"{server.url}/v1/feed", params={"user_id": user, "k": 10}).json()
    assert again["degraded"] == [] and len(again["items"]) == 10
    assert not {i["video_id"] for i in first["items"]} & {i["video_id"] for i in again["items"]}
    assert redis_client.exists(f"feed:user_seen:{user}")


class PrivateRedis:
    """A redis-server of this test alone, persisting to an append-only file so a restart keeps the data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (self.port,) = free_ports(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed: run `make system-deps`")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def test_redis_stopped_under_the_service_degrades_then_recovers(serving_env: ServingEnvironment, tmp_path):
    server_redis = PrivateRedis(tmp_path)
    server_redis.start()
    try:
        copy_features(serving_env, server_redis.url, "lost:")
        user = serving_env.users[39]

        def feed(server: ServingServer) -> dict:
            response = httpx.get(f"{server.url}/v1/feed", params={"user_id": user, "k": 8}, timeout=30)
            assert response.status_code == 200
            return response.json()

        def eventually(condition, timeout_s: float = 60.0):  # noqa: ANN202
            deadline = time.monotonic() + timeout_s
            while not (found := condition()):
                assert time.monotonic() < deadline, "the service did not get there in time"
                time.sleep(0.1)
            return found

        with ServingServer(redis_config(serving_env, server_redis.url, "lost:")) as server:
            assert feed(server)["degraded"] == []
            server_redis.stop()
            body = feed(server)
            assert {"state_unavailable", "features_unavailable"} & set(body["degraded"])
            assert body["ranker"] == "trending" and len(body["items"]) == 8
            eventually(lambda: httpx.get(f"{server.url}/readyz").status_code == 503)

            server_redis.start()  # same port, same data (append-only file)
            eventually(lambda: feed(server)["degraded"] == [])
            eventually(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)  # the next health probe
            assert server.state.metrics.fallbacks.labels("features_unavailable")._value.get() >= 1
    finally:
        server_redis.stop()
