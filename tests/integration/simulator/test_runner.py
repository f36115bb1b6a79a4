"""The simulator against the real local broker: every message it reports is in the topic, as reported.

Two producer processes write to every partition at once, as any Kafka clients may."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import Invalid, validate_payload
from reelhouse.simulator import SimulationOptions, run_simulation
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration


def test_run_simulation_produces_exactly_what_it_reports(stack_config: ReelhouseConfig) -> None:
    topic = f"test.simulator.{uuid.uuid4().hex[:8]}"
    options = SimulationOptions.from_config(
        stack_config, rate=0.0, duration_s=None, events=20_000, users=2_000, videos=5_000, topic=topic,
        processes=2, malformed_share=0.02,
    )  # fmt: skip
    report = run_simulation(stack_config, options)
    assert report.events == 20_000 and report.delivery_errors == 0

    messages = read_topic(stack_config.kafka, topic)
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
