"""Per-test isolation for ingestion tests: a fresh topic, lake and checkpoint on the session stack."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from reelhouse.config import ReelhouseConfig, TopicConfig
from reelhouse.events.contract import Invalid, encode_event, make_event, validate_payload
from reelhouse.kafka import ensure_topic
from tests.support.kafka import produce

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


def produce_events(config: ReelhouseConfig, events: Sequence[dict]) -> int:
    """``events`` into the config's events topic as the app sends them: encoded, keyed by their user."""
    values = [encode_event(e) for e in events]
    return produce(config.kafka, config.kafka.events_topic.name, values, [e["user_id"].encode() for e in events])


def valid_event_ids(messages: list) -> list[str]:
    ids = []
    for m in messages:
        try:
            ids.append(validate_payload(m.value(), m.timestamp()[1])["event_id"])
        except Invalid:
            pass
    return ids
