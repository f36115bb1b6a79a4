"""Accepted means durable: ``POST /v1/events`` against a real broker, and impressions that fail counted.

A 202 only once Kafka acknowledged every event of the batch, and then each is on the topic once;
a batch that is not delivered (a full local queue mid-batch, a topic that does not exist on a
broker without topic auto-creation, no producer at all) is answered 503 with Retry-After, and the
body's report is exactly what is on the topic. Impressions whose delivery fails are counted in
``reelhouse_kafka_failed_total{kind="impression"}``; a shutdown with the broker down logs and
counts the messages it lost.

Users are unique per test (the online store's "seen" state is shared by the session).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter

import httpx
import pytest

from reelhouse.events.contract import make_event
from reelhouse.kafka.clients import admin_client, ensure_topic
from reelhouse.serving.server import ServingServer
from tests.integration.serving.conftest import TOKEN, ServingEnvironment, TopicReader, serving_config

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAILED = "reelhouse_kafka_failed_total"
DELIVERED = "reelhouse_kafka_delivered_total"


def event(user: str, video: str) -> dict:
    return make_event(
        event_id=f"e-{uuid.uuid4().hex}",
        event_type="like",
        user_id=user,
        video_id=video,
        event_time_ms=int(time.time() * 1000),
        session_id="s-delivery",
        device={"os": "ios", "app_version": "1.0", "country": "US", "network": "wifi"},
    )


def new_user() -> str:
    return f"delivery-{uuid.uuid4().hex[:10]}"


def sample(server: ServingServer, name: str, kind: str) -> float:
    """A counter of the server's registry (also readable after it stopped)."""
    return server.state.metrics.registry.get_sample_value(name, {"kind": kind}) or 0.0


def wait_until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)


def on_topic_once_up_to(topic: TopicReader, marker: dict) -> Counter:
    """How often each event id is on the topic, read up to ``marker`` (posted after, with the same key:
    its partition's earlier messages, every retry or duplicate included, are read before it)."""
    messages = topic.wait_for(lambda seen: any(value["event_id"] == marker["event_id"] for _, value in seen))
    return Counter(value["event_id"] for _, value in messages)


def assert_problems_cover(body: dict, size: int) -> list[int]:
    """The 503 report names every event once, as delivered or not delivered; returns the not delivered."""
    failed = [problem["index"] for problem in body["detail"]]
    assert all(problem["reason"] == "not_delivered" and problem["detail"] for problem in body["detail"])
    assert sorted(failed + body["delivered"]) == list(range(size))
    return failed


def test_an_accepted_batch_is_on_the_topic_exactly_once(server: ServingServer, topic: TopicReader):
    user = new_user()
    batch = [event(user, f"v{i}") for i in range(40)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v1/events", json={"events": batch}, headers=AUTH)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 40}
        marker = event(user, "v0")
        assert client.post("/v1/events", json={"events": [marker]}, headers=AUTH).status_code == 202
    counts = on_topic_once_up_to(topic, marker)
    assert {e["event_id"]: counts[e["event_id"]] for e in batch} == {e["event_id"]: 1 for e in batch}


def test_a_queue_full_mid_batch_answers_503_with_exactly_what_is_on_the_topic(
    serving_env: ServingEnvironment, topic: TopicReader
):
    # A local queue of 1 KB takes a couple of events: the batch's tail is refused while its head
    # is delivered (the count-based room check passes, the byte limit does not).
    kafka = serving_env.config.kafka
    config = serving_config(
        serving_env.config, kafka={"producer": {**kafka.producer, "queue.buffering.max.kbytes": "1"}}
    )
    user = new_user()
    batch = [event(user, f"v{i}") for i in range(10)]
    with ServingServer(config) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v1/events", json={"events": batch}, headers=AUTH)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(config.serving.retry_after_s)
        body = response.json()
        failed = assert_problems_cover(body, len(batch))
        delivered = body["delivered"]
        assert failed and delivered, body  # a partial batch, the case at stake
        assert {p["detail"] for p in body["detail"]} == {"_QUEUE_FULL"}
        assert delivered == list(range(len(delivered)))  # queueing stopped at the first refusal
        assert sample(server, FAILED, "event") == len(failed)
        marker = event(user, "v0")
        assert client.post("/v1/events", json={"events": [marker]}, headers=AUTH).status_code == 202
    counts = on_topic_once_up_to(topic, marker)
    assert {e["event_id"] for e in batch if counts[e["event_id"]]} == {batch[i]["event_id"] for i in delivered}
    assert all(counts[batch[i]["event_id"]] == 1 for i in delivered)


def test_a_batch_to_a_missing_topic_is_not_accepted_and_its_impressions_count_as_failed(
    serving_env: ServingEnvironment,
):
    # The stack's broker does not create topics on demand, so no delivery can succeed.
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    config = serving_config(
        serving_env.config, kafka={"events_topic": {"name": missing}}, serving={"delivery_timeout_s": 1.0}
    )
    user = new_user()
    with ServingServer(config) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        batch = [event(user, f"v{i}") for i in range(3)]
        response = client.post("/v1/events", json={"events": batch}, headers=AUTH)
        assert response.status_code == 503, response.text
        assert "Retry-After" in response.headers
        body = response.json()
        assert body["delivered"] == [] and assert_problems_cover(body, 3) == [0, 1, 2]

        page = client.get("/v1/feed", params={"user_id": user, "k": 5}, headers=AUTH)
        assert page.status_code == 200, page.text
        shown = len(page.json()["items"])
        assert shown > 0
        wait_until(lambda: sample(server, FAILED, "impression") == shown, "the impressions' failed reports")
        wait_until(lambda: sample(server, FAILED, "event") == 3, "the events' failed reports")
        assert sample(server, DELIVERED, "impression") == 0
    topics = admin_client(config.kafka).list_topics(timeout=10).topics
    assert missing not in topics


def test_without_a_producer_events_are_refused_and_impressions_count_as_failed(serving_env: ServingEnvironment):
    kafka = serving_env.config.kafka
    config = serving_config(serving_env.config, kafka={"producer": {**kafka.producer, "no.such.setting": "1"}})
    with ServingServer(config) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert server.state.producer is None
        response = client.post("/v1/events", json={"events": [event(new_user(), "v1")]}, headers=AUTH)
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["detail"][0]["reason"] == "kafka_unavailable"
        page = client.get("/v1/feed", params={"user_id": new_user(), "k": 5}, headers=AUTH)
        assert page.status_code == 200, page.text
        assert sample(server, FAILED, "impression") == len(page.json()["items"]) > 0


@pytest.mark.slow
def test_shutdown_with_the_broker_down_logs_and_counts_what_was_lost(
    serving_env: ServingEnvironment, make_private_stack, caplog: pytest.LogCaptureFixture
):
    stack = make_private_stack()
    stack.up()
    kafka = stack.config.kafka
    ensure_topic(kafka, kafka.events_topic)
    # Messages would wait two minutes for the broker; the shutdown gives them one second.
    config = serving_config(serving_env.config, serving={"delivery_timeout_s": 120.0, "shutdown_flush_s": 1.0})
    config = config.model_copy(update={"kafka": kafka})
    server = ServingServer(config).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            accepted = client.post("/v1/events", json={"events": [event(new_user(), "v1")]}, headers=AUTH)
            assert accepted.status_code == 202, accepted.text
            stack.down()
            shown = 0
            for _ in range(3):
                page = client.get("/v1/feed", params={"user_id": new_user(), "k": 5}, headers=AUTH)
                assert page.status_code == 200, page.text
                shown += len(page.json()["items"])
        assert shown > 0
    finally:
        with caplog.at_level(logging.WARNING, logger="reelhouse.serving.collector"):
            server.stop()
    assert sample(server, FAILED, "impression") == shown
    assert sample(server, DELIVERED, "impression") == 0
    lost = [r.getMessage() for r in caplog.records if r.name == "reelhouse.serving.collector"]
    assert any(f"{shown} impressions" in message for message in lost), lost
