"""The simulator against the real local broker: every message it reports is in the topic, as reported."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import Invalid, validate_payload
from reelhouse.kafka import admin_client, consumer
from reelhouse.kafka.clients import client_options
from reelhouse.simulator import SimulationOptions, run_simulation

pytestmark = pytest.mark.integration


def read_topic(config: ReelhouseConfig, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every message of ``topic``; reads until ``expected`` arrived, since the broker's reported
    end offsets can lag the real end by a producer batch."""
    partitions = admin_client(config.kafka).list_topics(topic, timeout=10).topics[topic].partitions
    reader = consumer(client_options(config.kafka))
    reader.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in reader.consume(10_000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
        # Nothing beyond what was reported either.
        messages.extend(m for m in reader.consume(10_000, timeout=1.0) if m.error() is None)
    finally:
        reader.close()
    return messages


def test_run_simulation_produces_exactly_what_it_reports(stack_config: ReelhouseConfig) -> None:
    topic = f"test.simulator.{uuid.uuid4().hex[:8]}"
    options = SimulationOptions.from_config(
        stack_config, rate=0.0, duration_s=None, events=20_000, users=2_000, videos=5_000, topic=topic,
        processes=2, malformed_share=0.02,
    )  # fmt: skip
    report = run_simulation(stack_config, options)
    assert report.events == 20_000 and report.delivery_errors == 0

    messages = read_topic(stack_config, topic, report.events)
    assert len(messages) == report.events
    valid, reasons, types, event_ids = 0, Counter(), Counter(), set()
    for message in messages:
        try:
            row = validate_payload(message.value(), message.timestamp()[1])
        except Invalid as e:
            reasons[e.reason] += 1
            continue
        valid += 1
        types[row["event_type"]] += 1
        event_ids.add(row["event_id"])
        assert message.key() == row["user_id"].encode()
    assert valid == report.valid_events == len(event_ids)
    assert dict(types) == {k: v for k, v in report.per_type.items() if v}
    assert sum(reasons.values()) == sum(report.malformed.values())
    assert reasons["oversized_payload"] == report.malformed["oversized_payload"]

    videos = pq.read_table(report.catalogue["videos"])
    assert videos.num_rows == report.videos
    assert Path(report.catalogue["users"]).parent == Path(stack_config.simulator.catalogue_dir)
