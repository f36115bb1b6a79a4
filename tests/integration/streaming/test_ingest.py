"""Kafka -> bronze/quarantine on the real local broker, local Spark and real Delta tables."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from reelhouse.errors import StreamError
from reelhouse.events.contract import encode_event
from reelhouse.lake import Lake
from reelhouse.streaming.ingest import run_ingestion
from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from tests.support.kafka import produce, read_topic

from .conftest import produce_events, valid_event

pytestmark = pytest.mark.integration


def _malformed(now_ms: int) -> list[tuple[bytes, str]]:
    """One message per way of breaking the contract, with the reason it must be quarantined for."""
    good = valid_event(999_999, now_ms, prefix="bad")
    no_user = dict(good)
    del no_user["user_id"]
    wrong_type = dict(good, watch_ms="long")
    future = dict(good, event_time=now_ms + 10 * 86_400_000)
    unknown = dict(good, event_type="teleport")
    return [
        (b"{this is not json", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (encode_event(no_user), "missing_field"),
        (encode_event(wrong_type), "wrong_type"),
        (encode_event(future), "timestamp_out_of_range"),
        (encode_event(unknown), "unknown_event_type"),
        (b'{"pad": "' + b"x" * 20_000 + b'"}', "oversized_payload"),
        (b"", "empty_payload"),
    ]


def test_known_mix_lands_valid_in_bronze_and_malformed_in_quarantine(spark, ingest_config):
    now_ms = int(time.time() * 1000)
    valid = [valid_event(i, now_ms) for i in range(2_000)]
    malformed = _malformed(now_ms) * 3
    messages = [(e["user_id"].encode(), encode_event(e)) for e in valid]
    # Interleave the bad ones so they share micro-batches and partitions with good ones.
    for n, (value, _) in enumerate(malformed):
        messages.insert(n * 97, (b"k", value))
    keys, values = zip(*messages)
    produce(ingest_config.kafka, ingest_config.kafka.events_topic.name, values, keys)

    result = run_ingestion(spark, ingest_config, trigger="available_now")

    lake = Lake(ingest_config.lake)
    bronze_ids = lake.to_arrow(BRONZE_EVENTS.name, columns=["event_id"]).column("event_id").to_pylist()
    assert len(bronze_ids) == len(set(bronze_ids)), "an event was written twice"
    assert set(bronze_ids) == {e["event_id"] for e in valid}, "bronze must hold exactly the valid events"
    quarantine = lake.to_arrow(QUARANTINE_EVENTS.name).to_pylist()
    assert Counter(q["reason"] for q in quarantine) == Counter(reason for _, reason in malformed)
    assert all(q["detail"] or q["reason"] == "empty_payload" for q in quarantine)
    assert {bytes(q["raw_value"] or b"") for q in quarantine} == {value for value, _ in malformed}
    assert all(q["kafka_topic"] == ingest_config.kafka.events_topic.name for q in quarantine)
    assert result.bronze_rows == len(valid) and result.quarantine_rows == len(malformed)


def test_tail_of_an_idle_topic_is_read(spark, ingest_config):
    # A handful of messages fit in one producer batch: exactly the case where the broker's
    # reported end lags the real one until more data arrives, which it never does here.
    now_ms = int(time.time() * 1000)
    events = [valid_event(i, now_ms, prefix="tail") for i in range(7)]
    produce_events(ingest_config, events)

    run_ingestion(spark, ingest_config, trigger="available_now")

    ids = Lake(ingest_config.lake).to_arrow(BRONZE_EVENTS.name, columns=["event_id"]).column("event_id")
    assert sorted(ids.to_pylist()) == sorted(e["event_id"] for e in events)


def test_max_offsets_per_trigger_splits_the_backlog_and_a_rerun_adds_nothing(spark, ingest_config):
    config = ingest_config.model_copy(
        update={"ingest": ingest_config.ingest.model_copy(update={"max_offsets_per_trigger": 300})}
    )
    now_ms = int(time.time() * 1000)
    events = [valid_event(i, now_ms, prefix="lim") for i in range(1_500)]
    produce_events(config, events)

    first = run_ingestion(spark, config, trigger="available_now")
    again = run_ingestion(spark, config, trigger="available_now")

    # 1500 records at <= 300 per trigger cannot take fewer than 5 micro-batches.
    assert first.batches >= 5
    assert again.bronze_rows == 0
    assert Lake(config.lake).to_arrow(BRONZE_EVENTS.name).num_rows == 1_500


def test_starting_offsets_json_skips_what_it_names(spark, ingest_config):
    now_ms = int(time.time() * 1000)
    events = [valid_event(i, now_ms, prefix="so") for i in range(400)]
    produce_events(ingest_config, events)
    topic = ingest_config.kafka.events_topic.name
    starting = json.dumps({topic: {"0": 10, "1": -2, "2": -2, "3": -2}})  # Spark needs every partition
    config = ingest_config.model_copy(
        update={"ingest": ingest_config.ingest.model_copy(update={"starting_offsets": starting})}
    )

    run_ingestion(spark, config, trigger="available_now")

    bronze = Lake(config.lake).to_arrow(BRONZE_EVENTS.name, columns=["kafka_partition", "kafka_offset"])
    rows = bronze.to_pylist()
    # Partition 0 starts at offset 10; every other partition from its beginning.
    assert min(r["kafka_offset"] for r in rows if r["kafka_partition"] == 0) == 10
    assert len(rows) == 400 - 10


def test_the_same_micro_batch_handed_over_twice_lands_once(spark, ingest_config):
    # What Spark does after a crash between the Delta commit and its own checkpoint commit:
    # the batch with the same id (and the same records) is handed to the sink again.
    import datetime as dt
    from pathlib import Path

    import pyarrow as pa

    from reelhouse.events.records import KAFKA_RECORD_SCHEMA
    from reelhouse.streaming.ingest import IngestionJob

    checkpoint = Path(ingest_config.ingest.checkpoint_dir)
    checkpoint.mkdir(parents=True)
    (checkpoint / "metadata").write_text('{"id":"5f1c0a2e-0000-4000-8000-000000000001"}\n')
    now = dt.datetime.now(dt.UTC)
    events = [valid_event(i, int(now.timestamp() * 1000), prefix="twice") for i in range(50)]
    records = pa.table(
        {
            "key": [e["user_id"].encode() for e in events] + [b"k"],
            "value": [encode_event(e) for e in events] + [b"{broken"],
            "topic": ["t"] * 51,
            "partition": [0] * 51,
            "offset": list(range(51)),
            "timestamp": [now] * 51,
        },
        schema=KAFKA_RECORD_SCHEMA,
    )
    frame = spark.createDataFrame(
        records.to_pandas(),
        schema="key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    job = IngestionJob(spark, ingest_config)

    job.process_batch(frame, 0)
    job.process_batch(frame, 0)

    lake = Lake(ingest_config.lake)
    assert lake.to_arrow(BRONZE_EVENTS.name).num_rows == 50
    assert lake.to_arrow(QUARANTINE_EVENTS.name).num_rows == 1
    assert job.result.batches == 1 and job.result.skipped_batches == 1
    # Time travel: the version before the batch is the empty table.
    assert lake.read(spark, BRONZE_EVENTS.name, version=0).count() == 0


def test_a_recreated_topic_stops_the_stream_with_a_clear_error(spark, ingest_config):
    # The checkpoint says 300 records were read; the recreated topic holds 40. Reading on from
    # offset 300 would silently skip all of them, so failOnDataLoss stops the query.
    from reelhouse.kafka import ensure_topic
    from reelhouse.kafka.clients import delete_topic

    now_ms = int(time.time() * 1000)
    first = [valid_event(i, now_ms, prefix="old") for i in range(300)]
    produce_events(ingest_config, first)
    run_ingestion(spark, ingest_config, trigger="available_now")
    assert delete_topic(ingest_config.kafka, ingest_config.kafka.events_topic.name)
    time.sleep(1)
    ensure_topic(ingest_config.kafka, ingest_config.kafka.events_topic)
    second = [valid_event(i, now_ms, prefix="new") for i in range(40)]
    produce_events(ingest_config, second)

    with pytest.raises(StreamError, match="no longer has offsets it had not read"):
        run_ingestion(spark, ingest_config, trigger="available_now")


def test_offsets_deleted_before_the_job_read_them_stop_it_with_a_data_loss_error(spark, ingest_config):
    # DeleteRecords moves each partition's log start offset forward exactly as retention does
    # when it deletes old segments; the records between the checkpoint and the new start are gone.
    from confluent_kafka import TopicPartition

    from reelhouse.kafka import admin_client

    topic = ingest_config.kafka.events_topic
    now_ms = int(time.time() * 1000)
    read = [valid_event(i, now_ms, prefix="read") for i in range(200)]
    produce_events(ingest_config, read)
    first = run_ingestion(spark, ingest_config, trigger="available_now")
    unread = [valid_event(i, now_ms, prefix="unread") for i in range(400)]
    produce_events(ingest_config, unread)
    ends: dict[int, int] = {}
    for m in read_topic(ingest_config.kafka, topic.name):
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset())
    admin = admin_client(ingest_config.kafka)  # kept alive: its futures never complete once it is collected
    futures = admin.delete_records(
        [TopicPartition(topic.name, p, end) for p, end in ends.items()]  # keep only each partition's last record
    )
    for future in futures.values():
        future.result(timeout=60)

    with pytest.raises(StreamError, match="deleted by retention") as caught:
        run_ingestion(spark, ingest_config, trigger="available_now")

    assert ingest_config.ingest.checkpoint_dir in str(caught.value)
    # Nothing was skipped silently: bronze still holds exactly what the first run wrote.
    lake = Lake(ingest_config.lake)
    assert lake.to_arrow(BRONZE_EVENTS.name).num_rows == first.bronze_rows == 200
