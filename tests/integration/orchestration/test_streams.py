"""A supervised stream for real: the ingestion job started detached with spark-submit (with the
Kafka source and Delta jars), its lag measured from its checkpoint and the session broker with
kafka-python, then stopped."""

from __future__ import annotations

import time

import pytest

from reelhouse.orchestration.lag import measure_stream_lag
from reelhouse.orchestration.streams import is_running, pid_file, read_record, stop_streams, supervise_stream
from tests.integration.orchestration.conftest import numbered
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


def wait_for_lag(config, predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        lag = measure_stream_lag(config, "ingest_events")
        if predicate(lag) or time.monotonic() > deadline:
            return lag
        time.sleep(2)


def test_a_supervised_ingestion_catches_up_and_stops(stream_config):
    config, path = stream_config
    produce(config.kafka, config.kafka.events_topic.name, numbered(300))
    before = measure_stream_lag(config, "ingest_events")
    assert before.committed is None and before.total > 0  # never ran: behind by what the topic holds

    started = supervise_stream(config, "ingest_events", path, "local[1]")
    assert started.action == "started"
    caught_up = wait_for_lag(config, lambda lag: lag.committed is not None and lag.total == 0, timeout_s=240)
    log = (config.data_dir / "streams" / "ingest_events.log").read_text(errors="replace")
    assert caught_up.total == 0, log[-3000:]
    assert sum(caught_up.committed.values()) == 300
    assert supervise_stream(config, "ingest_events", path, "local[1]").action == "running"

    record = read_record(pid_file(config, "ingest_events"))
    assert stop_streams(config, timeout_s=30) == ["ingest_events"]
    assert not is_running(record)

    # What arrives after the stream stopped is lag, to the message (the broker's high watermark).
    produce(config.kafka, config.kafka.events_topic.name, numbered(40, start=300))
    assert measure_stream_lag(config, "ingest_events").total == 40
