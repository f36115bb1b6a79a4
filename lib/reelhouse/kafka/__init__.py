"""Kafka access: the one client factory, topic administration and offset handling."""

from reelhouse.kafka.clients import admin_client, consumer, ensure_topic, producer

__all__ = ["admin_client", "consumer", "ensure_topic", "producer"]
