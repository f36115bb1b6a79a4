"""Degradation, not failure: with the store down or slow, the model unloadable, recall empty or
missing, or too many requests at once, the service still answers, says why in ``degraded`` and
counts it; readiness tells an orchestrator what is missing.

Faults are real: a store path that cannot exist, a registered version whose artifacts were deleted,
a lake without tables (a Redis server stopped and restarted under the service is in
test_redis_store.py). A slow store is made slow by holding its reads on a gate until the test
releases them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from reelhouse.serving.server import ServingServer
from tests.integration.serving.conftest import (
    AUTH,
    ServingEnvironment,
    register_unloadable_version,
    serving_config,
    set_alias,
)

pytestmark = pytest.mark.integration


def get_feed(server: ServingServer, user: str, k: int = 8) -> dict:
    response = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": k}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def fallbacks(server: ServingServer, reason: str) -> float:
    return server.state.metrics.fallbacks.labels(reason)._value.get()


def wait_until(condition, timeout_s: float = 60.0, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "the service did not get there in time"
        time.sleep(every_s)


@contextmanager
def held_feature_reads(server: ServingServer) -> Iterator[threading.Event]:
    """The requests' store reads (user state and features, one read per request) wait until the
    yielded event is set; the health probe goes through."""
    client = server.state.store
    real = client._read
    release = threading.Event()

    def read(keys, decode=None):
        if "user_features" in keys:
            release.wait(60)
        return real(keys, decode)

    client._read = read
    try:
        yield release
    finally:
        release.set()
        client._read = real


def test_an_unreachable_store_at_start_still_serves_trending(serving_env: ServingEnvironment, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the store's directory cannot be created under a file")
    config = serving_config(serving_env.config, online_store={"path": blocker / "features.db"})
    with ServingServer(config) as server:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert not checks["online_store"]["ok"] and ready.json()["failing"] == ["online_store", "video_features"]
        assert "error" not in checks["online_store"]  # the exception names paths: it goes to the log only
        assert checks["ranker"]["ok"] and checks["recall"]["ok"]

        user = serving_env.users[20]
        body = get_feed(server, user, k=8)
        assert {"state_unavailable", "features_unavailable"} <= set(body["degraded"])
        assert body["ranker"] == "trending" and len(body["items"]) == 8
        listed = set(serving_env.candidates_of[user]) | set(serving_env.trending) | set(serving_env.new_videos)
        assert {item["video_id"] for item in body["items"]} <= listed
        # Trending order: the '*' list's scores, best first.
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)
        # Without the store, this process still remembers what it showed.
        again = get_feed(server, user, k=8)
        assert not {i["video_id"] for i in again["items"]} & {i["video_id"] for i in body["items"]}
        assert fallbacks(server, "features_unavailable") >= 2


def test_a_slow_store_costs_no_more_than_the_store_budget(serving_env: ServingEnvironment):
    with ServingServer(serving_env.config) as server, held_feature_reads(server):
        body = get_feed(server, serving_env.users[22])
        assert body["degraded"] == ["state_unavailable", "features_unavailable"] and body["ranker"] == "trending"
        assert len(body["items"]) == 8
        failures = server.state.metrics.store_failures.labels("request", "timeout")._value.get()
        assert failures >= 1


def test_too_many_requests_in_flight_get_503_with_retry_after(serving_env: ServingEnvironment):
    config = serving_config(
        serving_env.config,
        serving={
            "max_in_flight": 1,
            "retry_after_s": 3,
            "budgets": {"store_ms": 60_000, "rank_ms": 25},
        },
    )
    with ServingServer(config) as server, held_feature_reads(server) as release:
        answers: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: answers.append(
                httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": serving_env.users[23]}, timeout=60)
            )
        )
        first.start()
        wait_until(lambda: server.state.metrics.in_flight._value.get() == 1, every_s=0.01)
        overflow = httpx.get(
            f"{server.url}/v1/feed", headers=AUTH, params={"user_id": serving_env.users[24]}, timeout=30
        )
        assert overflow.status_code == 503 and overflow.headers["retry-after"] == "3"
        assert overflow.json()["detail"][0]["reason"] == "overloaded"
        release.set()
        first.join(60)
        assert answers[0].status_code == 200 and answers[0].json()["degraded"] == []
        assert server.state.metrics.overload.labels("feed")._value.get() == 1


def test_an_unloadable_model_falls_back_to_trending(serving_env: ServingEnvironment):
    broken = register_unloadable_version(serving_env.config, serving_env.versions["lightgbm"], serving_env.root)
    set_alias(serving_env.config, "broken", broken)
    config = serving_config(serving_env.config, serving={"ranker_alias": "broken"})
    with ServingServer(config) as server:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["ranker"] and ready.json()["checks"]["ranker"]["serving"] is None
        body = get_feed(server, serving_env.users[25])
        assert body["degraded"] == ["model_unavailable"] and body["ranker"] == "trending"
        assert len(body["items"]) == 8


def test_an_alias_moved_to_an_unloadable_version_keeps_the_previous_model(serving_env: ServingEnvironment):
    lightgbm = serving_env.versions["lightgbm"]
    set_alias(serving_env.config, "steady", lightgbm)
    config = serving_config(serving_env.config, serving={"ranker_alias": "steady", "alias_poll_s": 0.2})
    with ServingServer(config) as server:
        label = f"{serving_env.registered_model}/{lightgbm}"
        assert get_feed(server, serving_env.users[26])["ranker"] == label
        broken = register_unloadable_version(serving_env.config, lightgbm, serving_env.root)
        set_alias(serving_env.config, "steady", broken)
        body = wait_until(lambda: (b := get_feed(server, serving_env.users[26])) and b["degraded"] and b)
        assert body["degraded"] == ["ranker_stale"] and body["ranker"] == label
        assert httpx.get(f"{server.url}/readyz").status_code == 200  # a model serves
        assert server.state.metrics.model_loads.labels("failed")._value.get() >= 1


def test_a_recall_source_that_recalls_nothing_falls_back_to_trending(serving_env: ServingEnvironment):
    variants = [
        {"name": "a", "share": 0.5, "ranker": "alias:champion", "recall_sources": ["embedding"]},
        {"name": "b", "share": 0.5, "ranker": "alias:champion", "recall_sources": ["embedding"]},
    ]
    config = serving_config(serving_env.config, experiments=[{"name": "embedding-only", "variants": variants}])
    with ServingServer(config) as server:
        body = get_feed(server, serving_env.users[27])
        assert body["experiment"] == "embedding-only" and body["degraded"] == ["recall_empty"]
        assert len(body["items"]) == 8
        assert {item["source"] for item in body["items"]} <= {"trending", "exploration"}


def test_missing_recall_tables_answer_and_say_so(serving_env: ServingEnvironment, tmp_path):
    config = serving_config(serving_env.config, lake={"root": str(tmp_path / "empty-lake")})
    with ServingServer(config) as server:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and not ready.json()["checks"]["recall"]["ok"]
        body = get_feed(server, serving_env.users[28])
        assert body["degraded"] == ["candidates_unavailable"] and body["items"] == []
