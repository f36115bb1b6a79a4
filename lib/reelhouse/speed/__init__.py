"""The speed layer: the registry's features from the Kafka stream, within seconds, into the
online store and the real-time Delta feature tables."""
