"""Reading the events topic in Spark: Spark's own ``kafka`` source, configured once for every stream.

Both streams (ingestion and the speed layer) read through :func:`read_events_stream`, so their
offsets, limits and data-loss policy come from the same :class:`KafkaStreamConfig` fields:
``startingOffsets``, ``maxOffsetsPerTrigger``, ``minPartitions`` and ``failOnDataLoss``. Client
settings in ``kafka.client`` (librdkafka's names, shared with the producers) reach the Java client
as ``kafka.<name>`` through :func:`reelhouse.kafka.clients.java_client_settings`, which builds the
``sasl.jaas.config`` and PEM trust store the Java client wants.

A micro-batch is a fixed set of per-partition offset ranges that Spark writes to the
checkpoint's ``offsets/`` log before reading, so a restarted query re-reads exactly the same
records. With ``failOnDataLoss`` on, a range whose first offsets were deleted by retention
stops the query: :func:`data_loss_error` turns Spark's message into a :class:`StreamError`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from reelhouse.config import KafkaStreamConfig, ReelhouseConfig
from reelhouse.errors import StreamError
from reelhouse.kafka.clients import java_client_settings
from reelhouse.lake.storage import filesystem_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The columns every stream takes from the source (Spark's `kafka` format names and types).
KAFKA_RECORD_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

# What Spark's Kafka source says when failOnDataLoss stops a query (KafkaSourceProvider / KafkaMicroBatchStream).
_DATA_LOSS_MARKERS = ("failOnDataLoss", "data may have been lost", "Cannot fetch offset", "OFFSET_OUT_OF_RANGE")


def kafka_options(config: ReelhouseConfig, stream: KafkaStreamConfig) -> dict[str, str]:
    """Options of Spark's ``kafka`` source for the events topic, read by ``stream``."""
    options = {
        "kafka.bootstrap.servers": config.kafka.bootstrap_servers,
        "subscribe": config.kafka.events_topic.name,
        "startingOffsets": stream.starting_offsets,
        "minPartitions": str(stream.min_partitions),
        "failOnDataLoss": str(stream.fail_on_data_loss).lower(),
    }
    if stream.max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(stream.max_offsets_per_trigger)
    options.update({f"kafka.{k}": v for k, v in java_client_settings(config.kafka.client).items()})
    return options


def read_events_stream(spark: SparkSession, config: ReelhouseConfig, stream: KafkaStreamConfig) -> DataFrame:
    """A streaming DataFrame of the events topic's records: key, value, topic, partition, offset, timestamp."""
    reader = spark.readStream.format("kafka")
    for key, value in kafka_options(config, stream).items():
        reader = reader.option(key, value)
    return reader.load().select(*KAFKA_RECORD_COLUMNS)


def checkpoint_query_id(checkpoint_dir: str) -> str:
    """The stream id Spark keeps in ``<checkpoint>/metadata`` (stable across restarts)."""
    filesystem, path = filesystem_for(checkpoint_dir.rstrip("/") + "/metadata")
    with filesystem.open_input_stream(path) as f:
        return json.loads(f.read().decode().splitlines()[0])["id"]


def is_data_loss(error: BaseException) -> bool:
    text = str(error)
    return any(marker in text for marker in _DATA_LOSS_MARKERS)


def data_loss_error(stream_name: str, stream: KafkaStreamConfig, error: BaseException) -> StreamError:
    """The one-line error a stream stopped by ``failOnDataLoss`` raises (Spark's detail follows it)."""
    detail = str(error).strip().splitlines()
    first = next((line for line in detail if any(m in line for m in _DATA_LOSS_MARKERS)), detail[0] if detail else "")
    return StreamError(
        f"{stream_name} stopped: Kafka no longer has offsets it had not read yet (deleted by retention, or the "
        f"topic was recreated), so continuing would skip events. Nothing after the last committed batch was "
        f"written. Recover the events from elsewhere, or accept the loss by starting a new checkpoint "
        f"(move {stream.checkpoint_dir} away) or setting fail_on_data_loss: false. Spark said: {first.strip()[:400]}"
    )
