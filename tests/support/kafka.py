"""Kafka helpers shared by the integration tests."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition

from reelhouse.config import ReelhouseConfig
from reelhouse.kafka import consumer
from reelhouse.kafka.clients import client_options


def read_topic_to_end(config: ReelhouseConfig, topic: str, timeout_s: float = 60.0) -> list:
    """Every message of ``topic``: each partition from its first offset to its end (high watermark)."""
    reader = consumer(client_options(config.kafka))
    try:
        partitions = sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages = []
        read_to = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + timeout_s
        while any(read_to[p] < ends[p] for p in partitions):
            assert time.monotonic() < deadline, f"read {read_to} of {ends} within {timeout_s} s"
            for message in reader.consume(num_messages=10_000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
                read_to[message.partition()] = message.offset() + 1
        return messages
    finally:
        reader.close()
