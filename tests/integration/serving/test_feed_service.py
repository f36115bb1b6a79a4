"""The feed service over a real environment: uvicorn on a loopback port, Delta recall tables, a SQLite
online store, a LightGBM ranker from the MLflow registry, impressions into the session's Kafka broker.

Each test uses users of its own, since "seen" state accumulates in the shared online store.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import orjson
import pytest

from reelhouse.events.contract import make_event, validate_payload
from reelhouse.serving.server import ServingServer
from tests.integration.serving.conftest import AUTH, TOKEN, ServingEnvironment, TopicReader

pytestmark = pytest.mark.integration

TABLE_SOURCES = {"als", "covisit", "topic", "popularity", "exploration", "trending", "realtime"}


@pytest.fixture(scope="module")
def client(server: ServingServer):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def feed(client: httpx.Client, user: str, k: int = 10, **params) -> dict:
    response = client.get("/v1/feed", headers=AUTH, params={"user_id": user, "k": k, **params})
    assert response.status_code == 200, response.text
    return response.json()


def event(kind: str, user: str, video: str, **fields) -> dict:
    return make_event(
        event_id=f"e-{uuid.uuid4().hex}",
        event_type=kind,
        user_id=user,
        video_id=video,
        event_time_ms=int(time.time() * 1000),
        session_id="s-test",
        request_id="",
        device={"os": "ios", "app_version": "1.0", "country": "US", "network": "wifi"},
        **fields,
    )


def test_ready_with_the_champion_loaded(client: httpx.Client, serving_env: ServingEnvironment):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["ranker"]["serving"] == f"{serving_env.registered_model}/{serving_env.versions['lightgbm']}"
    assert checks["online_store"]["ok"] and checks["recall"]["ok"]


def test_a_feed_page_has_k_diverse_unseen_videos_ranked_by_the_champion(client, serving_env: ServingEnvironment):
    lightgbm = f"{serving_env.registered_model}/{serving_env.versions['lightgbm']}"
    for user in serving_env.users[:5]:
        body = feed(client, user, k=10)
        assert body["request_id"].startswith("r-") and len(body["request_id"]) == 34
        assert (body["user_id"], body["experiment"], body["variant"]) == (user, None, None)
        assert body["ranker"] == lightgbm and body["degraded"] == []
        items = body["items"]
        assert [item["position"] for item in items] == list(range(10))
        videos = [item["video_id"] for item in items]
        assert len(set(videos)) == 10
        assert all(item["source"] in TABLE_SOURCES for item in items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        assert max(Counter(serving_env.topic_of[v] for v in videos).values()) <= 3
        assert max(Counter(serving_env.creator_of[v] for v in videos).values()) <= 2
        # One place is kept for a new video, whatever its score.
        assert any(v in serving_env.new_videos for v in videos)


def test_pages_never_show_a_video_twice(client, serving_env: ServingEnvironment):
    user = serving_env.users[10]
    shown: list[str] = []
    for _ in range(4):
        page = [item["video_id"] for item in feed(client, user, k=10)["items"]]
        assert len(page) == 10
        assert not set(page) & set(shown)
        shown += page


def test_watched_videos_are_excluded_and_engagement_brings_its_neighbours(client, serving_env: ServingEnvironment):
    user = serving_env.users[11]
    before = feed(client, user, k=60)["items"]
    assert not any(item["source"] == "realtime" for item in before)
    liked = serving_env.candidates_of[user][-3]  # one of the user's candidates, not shown yet
    assert liked not in {item["video_id"] for item in before}
    posted = client.post("/v1/events", json={"events": [event("like", user, liked)]}, headers=AUTH)
    assert posted.status_code == 202 and posted.json() == {"accepted": 1}

    after = feed(client, user, k=60)["items"]
    videos = {item["video_id"] for item in after}
    assert liked not in videos  # watched: never recommended again
    assert not videos & {item["video_id"] for item in before}  # nor anything already shown
    realtime = {item["video_id"] for item in after if item["source"] == "realtime"}
    assert realtime and realtime <= set(serving_env.neighbours_of[liked])


def test_an_unknown_user_gets_trending_and_new_videos(client, serving_env: ServingEnvironment):
    body = feed(client, f"newcomer-{uuid.uuid4().hex[:8]}", k=12)
    assert len(body["items"]) == 12 and body["degraded"] == []
    assert {item["source"] for item in body["items"]} <= {"trending", "exploration"}
    for item in body["items"]:
        assert item["video_id"] in serving_env.trending or item["video_id"] in serving_env.new_videos


def test_every_item_is_an_impression_in_kafka(client, serving_env: ServingEnvironment, topic: TopicReader):
    user = serving_env.users[12]
    body = feed(
        client, user, k=7, session_id="sess-42", os="android", app_version="31.2", country="BR", network="cellular"
    )
    request_id = body["request_id"]
    messages = topic.wait_for(lambda found: sum(v.get("request_id") == request_id for _, v in found) >= 7)
    mine = [(key, value) for key, value in messages if value.get("request_id") == request_id]
    assert len(mine) == 7 and {key for key, _ in mine} == {user}  # one per item, keyed by the user
    impressions = sorted((value for _, value in mine), key=lambda value: value["position"])
    now_ms = int(time.time() * 1000)
    for item, impression in zip(body["items"], impressions, strict=True):
        row = validate_payload(orjson.dumps(impression), now_ms)  # contract-valid, as ingestion will check
        assert row["event_type"] == "impression" and row["video_id"] == item["video_id"]
        assert row["position"] == item["position"] and row["user_id"] == user
        assert row["session_id"] == "sess-42" and row["variant"] is None
        assert row["propensity"] == 1.0  # a deterministic page (explore_epsilon 0): every slot was the ranker's
        assert (row["device_os"], row["device_app_version"], row["device_country"], row["device_network"]) == (
            "android",
            "31.2",
            "BR",
            "cellular",
        )
        assert abs(row["event_time"] - now_ms) < 120_000
    assert len({i["event_id"] for i in impressions}) == 7


def test_events_need_the_token(client, serving_env: ServingEnvironment):
    batch = {"events": [event("play", serving_env.users[13], "v1", watch_ms=100, video_duration_ms=1000)]}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = client.post("/v1/events", json=batch, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"][0]["reason"] == "unauthorized"
    assert client.post("/v1/events", json=batch, headers=AUTH).status_code == 202


def test_an_invalid_batch_is_refused_whole_with_each_reason(
    client, serving_env: ServingEnvironment, topic: TopicReader
):
    user = serving_env.users[14]
    good = event("like", user, "v2")
    bad = {k: v for k, v in event("share", user, "v3").items() if k != "session_id"}
    response = client.post("/v1/events", json={"events": [good, bad, event("stare", user, "v4")]}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"index": 1, "reason": "missing_field", "detail": "session_id"},
        {
            "index": 2,
            "reason": "unknown_event_type",
            "detail": "'stare'; known: impression, play, like, share, comment, follow, skip",
        },
    ]
    # A later valid batch of the same user (same key, same partition) lands; the refused one never did.
    marker = event("comment", user, "v5")
    assert client.post("/v1/events", json={"events": [marker]}, headers=AUTH).status_code == 202
    messages = topic.wait_for(lambda found: any(v.get("event_id") == marker["event_id"] for _, v in found))
    assert not any(v.get("event_id") == good["event_id"] for _, v in messages)
    keyed = [k for k, v in messages if v.get("event_id") == marker["event_id"]]
    assert keyed == [user]


def test_malformed_requests_get_4xx_with_reasons(client, serving_env: ServingEnvironment):
    cases = [
        ({"user_id": "u 1"}, "user_id", "invalid_value"),
        ({"user_id": "u1", "k": 0}, "k", "invalid_value"),
        ({"user_id": "u1", "k": 61}, "k", "invalid_value"),  # serving.max_k is 60 here
        ({"user_id": "u1", "k": "ten"}, "k", "invalid_value"),
        ({"user_id": "u1", "os": "symbian"}, "os", "invalid_value"),
        ({"user_id": "u1", "usr": "x"}, "usr", "unknown_parameter"),
        ({}, "user_id", "missing_field"),
    ]
    for params, field, reason in cases:
        response = client.get("/v1/feed", headers=AUTH, params=params)
        assert response.status_code == 422, params
        assert {(p["field"], p["reason"]) for p in response.json()["detail"]} >= {(field, reason)}
    max_bytes = serving_env.config.serving.max_body_bytes
    too_large = client.post(
        "/v1/events", content=b"x" * (max_bytes + 1), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert too_large.status_code == 413 and too_large.json()["detail"][0]["reason"] == "body_too_large"
    many = [event("like", "u1", "v1")] * (serving_env.config.serving.max_events_per_request + 1)
    response = client.post("/v1/events", json={"events": many}, headers=AUTH)
    assert response.status_code == 413 and response.json()["detail"][0]["reason"] == "too_many_events"
    not_json = client.post("/v1/events", content=b"{oops", headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["reason"] == "invalid_json"
    assert client.delete("/v1/feed").status_code == 405


def test_metrics_expose_stage_latencies_and_counters(client, serving_env: ServingEnvironment):
    feed(client, serving_env.users[15])
    text = client.get("/metrics").text
    for stage in ("recall", "features", "rank", "rerank", "total"):
        assert f'reelhouse_feed_stage_seconds_bucket{{le="0.05",stage="{stage}"}}' in text
    assert 'reelhouse_feed_requests_total{degraded="no",ranker="model"}' in text
    assert "reelhouse_requests_rejected_total" in text and "reelhouse_kafka_delivered_total" in text
    assert client.get("/openapi.json").json()["info"]["title"] == "reelhouse feed service"
