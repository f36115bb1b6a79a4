"""Kafka access: the one client factory, topic administration and offset handling."""

from reelhouse.kafka.clients import admin_client, consumer, ensure_topic, kafka_python_consumer, producer

__all__ = ["admin_client", "consumer", "ensure_topic", "kafka_python_consumer", "producer"]
