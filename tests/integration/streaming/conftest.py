"""Per-test isolation for ingestion tests: a fresh topic, lake and checkpoint on the session stack."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import TopicPartition

from reelhouse.config import ReelhouseConfig, TopicConfig
from reelhouse.events.contract import Invalid, make_event, validate_payload
from reelhouse.kafka import ensure_topic, producer
from reelhouse.kafka.clients import client_options, consumer

DEVICE = {"os": "android", "app_version": "31.4.0", "country": "DE", "network": "wifi"}


@pytest.fixture
def ingest_config(stack_config: ReelhouseConfig, tmp_path: Path, request: pytest.FixtureRequest) -> ReelhouseConfig:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    topic = TopicConfig(name=f"t-{name}-{uuid.uuid4().hex[:6]}", partitions=4)
    config = stack_config.model_copy(
        update={
            "kafka": stack_config.kafka.model_copy(update={"events_topic": topic}),
            "lake": stack_config.lake.model_copy(update={"root": str(tmp_path / "lake")}),
            "ingest": stack_config.ingest.model_copy(
                update={
                    "checkpoint_dir": str(tmp_path / "checkpoint"),
                    "processing_time": "1 second",
                    "max_offsets_per_trigger": 20_000,
                }
            ),
        }
    )
    ensure_topic(config.kafka, topic)
    return config


def write_config(config: ReelhouseConfig, path: Path) -> Path:
    """A YAML file subprocesses can load (every path in it is already absolute)."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


def valid_event(i: int, now_ms: int, prefix: str = "e") -> dict:
    return make_event(
        event_id=f"{prefix}{i:06d}",
        event_type="play",
        user_id=f"u{i % 37}",
        video_id=f"v{i % 101}",
        event_time_ms=now_ms - i,
        session_id=f"s{i % 11}",
        request_id=f"r{i % 13}",
        device=DEVICE,
        watch_ms=1000 + i % 5000,
        video_duration_ms=15_000,
    )


def produce(config: ReelhouseConfig, messages: list[tuple[bytes | None, bytes]]) -> None:
    p = producer(config.kafka)
    for key, value in messages:
        while True:
            try:
                p.produce(config.kafka.events_topic.name, value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0, "messages left undelivered"


def read_topic(config: ReelhouseConfig, expected: int | None = None, timeout_s: float = 60) -> list:
    """Every message of the topic, read by explicit assignment.

    The broker may report an end short of the real one, so reading stops when ``expected``
    messages arrived or nothing new came for a few seconds.
    """
    topic = config.kafka.events_topic
    c = consumer(client_options(config.kafka))
    c.assign([TopicPartition(topic.name, p, 0) for p in range(topic.partitions)])
    messages, deadline, quiet_since = [], time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline:
        batch = [m for m in c.consume(10_000, timeout=0.5) if m.error() is None]
        if batch:
            messages.extend(batch)
            quiet_since = time.monotonic()
        if expected is not None and len(messages) >= expected:
            break
        if expected is None and time.monotonic() - quiet_since > 3:
            break
    c.close()
    return messages


def valid_event_ids(messages: list) -> list[str]:
    ids = []
    for m in messages:
        try:
            ids.append(validate_payload(m.value(), m.timestamp()[1])["event_id"])
        except Invalid:
            pass
    return ids
