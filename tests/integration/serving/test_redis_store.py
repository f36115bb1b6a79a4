"""The feed's store calls (``read_many``, ``read_modify_write``, ``scan``) on a real Redis server, and
the feed service with its user state and features in Redis, also while that server is stopped or hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from reelhouse.online.redis import RedisOnlineStore
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.serving.features import VIEWS
from reelhouse.serving.server import ServingServer
from tests.contracts.feed_store import FeedStoreBehaviour
from tests.contracts.online_store import DEFAULT_TTL_S
from tests.integration.online.conftest import TEST_PREFIX, redis_client, redis_url  # noqa: F401 - fixtures
from tests.integration.serving.conftest import AUTH, ServingEnvironment, serving_config
from tests.integration.serving.private_redis import PrivateRedis

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
        first = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
        assert first["degraded"] == [] and first["ranker"].startswith(serving_env.registered_model)
    with ServingServer(config) as server:  # another process: the seen videos come from Redis
        again = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
    assert again["degraded"] == [] and len(again["items"]) == 10
    assert not {i["video_id"] for i in first["items"]} & {i["video_id"] for i in again["items"]}
    assert redis_client.exists(f"feed:user_seen:{user}")


def test_redis_stopped_under_the_service_degrades_then_recovers(serving_env: ServingEnvironment, tmp_path):
    server_redis = PrivateRedis(tmp_path)
    server_redis.start()
    try:
        copy_features(serving_env, server_redis.url, "lost:")
        user = serving_env.users[39]

        def feed(server: ServingServer) -> dict:
            response = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 8}, timeout=30)
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


# A request must be answered well within this even while Redis hangs: its store read is bounded by
# budgets.store_ms, and every Redis call by online_store.redis_socket_timeout_s (0.5 s). Generous
# on purpose (a busy machine); without socket timeouts the request would wait for ever.
CLIENT_TIMEOUT_S = 10.0


def test_a_hung_redis_degrades_feeds_and_readiness_then_the_service_recovers(serving_env: ServingEnvironment, tmp_path):
    server_redis = PrivateRedis(tmp_path)
    user = serving_env.users[36]

    def feed(server: ServingServer) -> dict:
        response = httpx.get(
            f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 8}, timeout=CLIENT_TIMEOUT_S
        )
        assert response.status_code == 200, response.text
        return response.json()

    def ready(server: ServingServer) -> httpx.Response:
        return httpx.get(f"{server.url}/readyz", timeout=CLIENT_TIMEOUT_S)

    def eventually(condition, timeout_s: float = 60.0):  # noqa: ANN001, ANN202
        deadline = time.monotonic() + timeout_s
        while not (found := condition()):
            assert time.monotonic() < deadline, "the service did not get there in time"
            time.sleep(0.1)
        return found

    try:
        server_redis.start()
        copy_features(serving_env, server_redis.url, "hung:")
        with ServingServer(redis_config(serving_env, server_redis.url, "hung:")) as server:
            assert feed(server)["degraded"] == []
            with server_redis.paused():  # connections stay open; nothing answers
                for _ in range(5):  # the first waits for its budget, the next ones find the breaker open
                    body = feed(server)
                    assert "state_unavailable" in body["degraded"] and len(body["items"]) == 8
                # The probe fails on its socket timeout instead of hanging the health thread.
                unready = eventually(lambda: (answer := ready(server)).status_code == 503 and answer)
                assert not unready.json()["checks"]["online_store"]["ok"]
                written_before = server.state.metrics.state_writes.labels("written")._value.get()
            # Resumed: the health probe reconnects, feeds read the store again, the state writer catches up.
            eventually(lambda: ready(server).status_code == 200)
            eventually(lambda: feed(server)["degraded"] == [])
            eventually(lambda: server.state.metrics.state_writes.labels("written")._value.get() > written_before)

            with server_redis.paused():  # shutting down while Redis hangs ends too
                server.stop()
                assert not server._thread.is_alive()
    finally:
        server_redis.stop()
