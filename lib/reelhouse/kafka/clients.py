"""The one place Kafka clients are built, from :class:`KafkaConfig` or plain options.

librdkafka settings come from ``kafka.client`` (shared: security, SASL, SSL) layered with
``kafka.producer`` for producers. Executors receive plain dicts (configs are not shipped to them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from reelhouse.config import KafkaConfig, TopicConfig
from reelhouse.errors import StackError

log = logging.getLogger(__name__)


def client_options(kafka: KafkaConfig) -> dict[str, str]:
    """Settings every client shares: servers plus ``kafka.client``."""
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.client}


def producer(kafka: KafkaConfig, **overrides: str) -> Producer:
    return Producer({**client_options(kafka), **kafka.producer, **overrides})


def consumer(options: Mapping[str, str], **overrides: str) -> Consumer:
    """A consumer for explicit partition assignment (no group coordination, no commits)."""
    settings = {
        "group.id": "reelhouse-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "queued.min.messages": 200_000,
        **options,
        **overrides,
    }
    return Consumer(settings)


def admin_client(kafka: KafkaConfig) -> AdminClient:
    return AdminClient(client_options(kafka))


def topic_partition_counts(admin: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout_s)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if not topic.error}


def ensure_topic(kafka: KafkaConfig, topic: TopicConfig, timeout_s: float = 15.0) -> bool:
    """Create ``topic`` with its explicit partition count unless it exists; True if created.

    An existing topic with a different partition count is reported, not changed: partitions
    can only grow and moving keys between partitions is an operator's decision.
    """
    admin = admin_client(kafka)
    try:
        existing = topic_partition_counts(admin, timeout_s)
    except KafkaException as e:
        raise StackError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {e}; is the broker up (reelhouse stack up)?") from e
    if topic.name in existing:
        if existing[topic.name] != topic.partitions:
            log.warning(
                "topic %s has %d partitions, config asks for %d; leaving it as it is",
                topic.name, existing[topic.name], topic.partitions,
            )
        return False
    futures = admin.create_topics(
        [NewTopic(topic.name, num_partitions=topic.partitions, replication_factor=topic.replication_factor)],
        request_timeout=timeout_s,
    )
    try:
        futures[topic.name].result(timeout=timeout_s)
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" in str(e):
            return False
        raise StackError(f"could not create topic {topic.name}: {e}") from e
    log.info("created topic %s with %d partitions", topic.name, topic.partitions)
    return True


def delete_topic(kafka: KafkaConfig, name: str, timeout_s: float = 30.0) -> bool:
    """Delete ``name`` and wait for the broker's answer; False (logged) if it could not be."""
    admin = admin_client(kafka)  # must outlive the request, or librdkafka cancels it
    try:
        admin.delete_topics([name], operation_timeout=timeout_s)[name].result(timeout=timeout_s)
        return True
    except KafkaException as e:
        log.warning("could not delete topic %s: %s", name, e)
        return False
