"""Spark Structured Streaming: the Kafka source and the jobs that land events in the lake."""
