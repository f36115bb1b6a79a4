"""Kafka helpers shared by the integration tests: the one way a test writes messages and reads a topic back."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from confluent_kafka import TopicPartition

from reelhouse.config import KafkaConfig
from reelhouse.kafka import consumer, producer
from reelhouse.kafka.clients import client_options


def produce(
    kafka: KafkaConfig,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    **settings: str,
) -> int:
    """Write ``values`` to ``topic``, each with its key from ``keys`` (else none); all acknowledged, or fail.

    ``settings`` override the config's producer settings (e.g. idempotence and ``acks=all``).
    Returns how many were written.
    """
    assert keys is None or len(keys) == len(values), f"{len(keys)} keys for {len(values)} values"
    writer = producer(kafka, **settings)
    for value, key in zip(values, itertools.repeat(None) if keys is None else keys):
        while True:
            try:
                writer.produce(topic, value=value, key=key)
                break
            except BufferError:  # a large batch outruns librdkafka's local queue: wait for room
                writer.poll(0.05)
        writer.poll(0)
    assert writer.flush(60) == 0, "messages left undelivered"
    return len(values)


def read_topic(kafka: KafkaConfig, topic: str, timeout_s: float = 60.0, quiet_s: float | None = None) -> list:
    """Every message of ``topic``, each partition read from its first offset; fails after ``timeout_s``.

    By default reading stops at each partition's end as the broker reports it when the call starts
    (its high watermark): right for messages acknowledged before the call. With ``quiet_s`` it
    stops instead once nothing new arrived for that long, for a topic whose end is not known to
    hold everything yet (a writer in another process may still be delivering).
    """
    reader = consumer(client_options(kafka))
    try:
        partitions = sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list = []
        read_to = dict.fromkeys(partitions, 0)
        started = last_read = time.monotonic()
        while True:
            now = time.monotonic()
            if quiet_s is None and all(read_to[p] >= ends[p] for p in partitions):
                return messages
            if quiet_s is not None and now - last_read > quiet_s:
                return messages
            assert now - started < timeout_s, f"read {read_to} of {ends} within {timeout_s} s"
            for message in reader.consume(num_messages=10_000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
                read_to[message.partition()] = message.offset() + 1
                last_read = time.monotonic()
    finally:
        reader.close()
