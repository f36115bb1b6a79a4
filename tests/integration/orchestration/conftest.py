"""Fixtures of the supervised-stream tests (here and the streaming DAG's in tests/integration/airflow)."""

from __future__ import annotations

import uuid

import pytest
import yaml

from reelhouse.config import TopicConfig, load_config
from reelhouse.kafka.clients import ensure_topic
from reelhouse.orchestration.streams import stop_streams


def numbered(count: int, start: int = 0) -> list[bytes]:
    """``count`` small messages for the events topic: not events (ingestion quarantines them), only
    their offsets matter to the stream tests."""
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + count)]


@pytest.fixture
def stream_config(stack_config, tmp_path):
    """The session broker, a topic of its own, everything else under tmp_path, a small driver."""
    topic = TopicConfig(name=f"supervised-{uuid.uuid4().hex[:8]}", partitions=2)
    settings = stack_config.model_dump(mode="json")
    settings.update(
        data_dir=str(tmp_path),
        lake={**settings["lake"], "root": str(tmp_path / "lake")},
        kafka={**settings["kafka"], "events_topic": topic.model_dump()},
        spark={**settings["spark"], "shuffle_partitions": 2, "conf": {"spark.driver.memory": "1g"}},
        ingest={**settings["ingest"], "checkpoint_dir": str(tmp_path / "checkpoints" / "ingest_events"),
                "processing_time": "1 seconds"},
        speed={**settings["speed"], "checkpoint_dir": str(tmp_path / "checkpoints" / "stream_features")},
    )  # fmt: skip
    path = tmp_path / "reelhouse.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_config(path, environ={})
    ensure_topic(config.kafka, topic)
    yield config, str(path)
    stop_streams(config, timeout_s=20)
