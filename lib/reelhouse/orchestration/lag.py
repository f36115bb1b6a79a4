"""How far a streaming query is behind its Kafka topic: end offsets minus what it committed.

A Spark checkpoint keeps, per micro-batch ``N``, the offsets the batch reads up to in
``offsets/N`` (a version line, a line of batch metadata, then one JSON line per source: Spark's
``kafka`` source writes ``{"topic": {"partition": next offset}}``) and, once the batch's output is
committed, a marker ``commits/N``. What the query has committed is therefore ``offsets/N`` of the
highest ``N`` in ``commits/``. A batch planned but not committed yet counts as not read.

The lag of a partition is its end offset (the broker's high watermark: the offset the next
message will get) minus that position; a partition the query has not seen yet counts from its
first offset still kept. The offsets come from kafka-python, which the Airflow workers import
more cheaply than librdkafka (see :func:`reelhouse.kafka.kafka_python_consumer`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from reelhouse.config import IngestConfig, ReelhouseConfig, SpeedConfig
from reelhouse.errors import KafkaSourceError, ReelhouseError, StackError

log = logging.getLogger(__name__)

#: Offsets as Spark's kafka source writes them in a checkpoint's offset log: topic -> partition -> offset.
OffsetMap = dict[str, dict[str, int]]

DEFAULT_MAX_LAG = 1_000_000  # records, for a stream without max_offsets_per_trigger


def _filesystem(location: str) -> tuple[Any, str]:
    """A pyarrow filesystem and path for a local directory or an object-store URI."""
    from pyarrow import fs

    if "://" in location:
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), location


def _batch_ids(filesystem: Any, directory: str) -> list[int]:
    from pyarrow import fs

    info = filesystem.get_file_info(directory)
    if info.type != fs.FileType.Directory:
        return []
    selector = fs.FileSelector(directory, allow_not_found=True)
    names = (entry.base_name for entry in filesystem.get_file_info(selector) if entry.type == fs.FileType.File)
    # Spark also leaves .crc and temporary files here; batch files are named by their id only.
    return [int(name) for name in names if name.isascii() and name.isdigit()]


def parse_offset_log(text: str) -> OffsetMap:
    """The Kafka offsets of one ``offsets/N`` file, merged over its sources."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0].startswith("v"):
        raise ReelhouseError(f"not a Spark offset log entry (first line {lines[0] if lines else ''!r})")
    merged: OffsetMap = {}
    for line in lines[2:]:
        line = line.strip()
        if not line or line == "-":  # a source without offsets yet
            continue
        try:
            source = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReelhouseError(f"unreadable source offsets {line[:200]!r}: {e}") from e
        if not isinstance(source, dict):
            continue
        for topic, partitions in source.items():
            if isinstance(partitions, dict):
                merged.setdefault(topic, {}).update({str(p): int(o) for p, o in partitions.items()})
    return merged


def committed_offsets(checkpoint_dir: str) -> OffsetMap | None:
    """Offsets of the last committed micro-batch of the query at ``checkpoint_dir`` (None: none yet)."""
    filesystem, root = _filesystem(checkpoint_dir)
    root = root.rstrip("/")
    committed = _batch_ids(filesystem, f"{root}/commits")
    if not committed:
        return None
    batch = max(committed)
    with filesystem.open_input_stream(f"{root}/offsets/{batch}") as stream:
        text = stream.read().decode("utf-8")
    try:
        return parse_offset_log(text)
    except ReelhouseError as e:
        raise ReelhouseError(f"{root}/offsets/{batch}: {e}") from e


@dataclass(frozen=True)
class StreamLag:
    """Records of ``topic`` a stream has not committed yet, per partition."""

    stream: str
    topic: str
    partitions: dict[str, int]
    committed: dict[str, int] | None  # the query's position per partition (None: never committed)
    end: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.partitions.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def stream_lag(
    stream: str, topic: str, committed: OffsetMap | None, low: dict[str, int], high: dict[str, int]
) -> StreamLag:
    """Lag per partition from the committed offsets and the partitions' first (low) and end (high) offsets."""
    position = None if committed is None else committed.get(topic, {})
    lags = {}
    for partition, end in high.items():
        first = low.get(partition, 0)
        read_to = first if position is None else max(position.get(partition, first), first)
        # A position past the end (a topic deleted and created again under the same name) is not
        # lag: the stream reports that itself, as data loss, when it next reads the partition.
        lags[partition] = max(0, end - read_to)
    return StreamLag(stream, topic, dict(sorted(lags.items(), key=lambda kv: int(kv[0]))), position, dict(high))


def kafka_watermarks(
    config: ReelhouseConfig, topic: str, timeout_s: float = 10.0
) -> tuple[dict[str, int], dict[str, int]]:
    """First and end offsets of every partition of ``topic``, as the broker reports them."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from reelhouse.kafka.clients import kafka_python_consumer

    client = kafka_python_consumer(config.kafka)
    try:
        partitions = client.partitions_for_topic(topic)
        if not partitions:
            raise KafkaSourceError(f"topic {topic} does not exist on {config.kafka.bootstrap_servers}")
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        timeout_ms = int(timeout_s * 1000)
        first = client.beginning_offsets(assigned, timeout_ms=timeout_ms)
        end = client.end_offsets(assigned, timeout_ms=timeout_ms)
    except KafkaError as e:
        raise StackError(f"cannot read the offsets of {topic} at {config.kafka.bootstrap_servers}: {e}") from e
    finally:
        client.close()
    low = {str(tp.partition): int(first[tp]) for tp in assigned}
    high = {str(tp.partition): int(end[tp]) for tp in assigned}
    return low, high


def stream_settings(config: ReelhouseConfig, stream: str) -> IngestConfig | SpeedConfig:
    """The config section of a supervised stream (``ingest_events`` or ``stream_features``)."""
    sections = {"ingest_events": config.ingest, "stream_features": config.speed}
    if stream not in sections:
        raise ReelhouseError(f"unknown stream {stream!r}; expected one of {sorted(sections)}")
    return sections[stream]


def max_lag_default(config: ReelhouseConfig, stream: str) -> int:
    """One micro-batch's cap: a backlog beyond it cannot be read by the next trigger any more."""
    return stream_settings(config, stream).max_offsets_per_trigger or DEFAULT_MAX_LAG


def max_lag_bound(config: ReelhouseConfig, stream: str) -> int:
    """The lag the streaming DAG tolerates: ``orchestration.max_stream_lag``, else one micro-batch's cap."""
    configured = config.orchestration.max_stream_lag
    return configured if configured is not None else max_lag_default(config, stream)


def measure_stream_lag(config: ReelhouseConfig, stream: str) -> StreamLag:
    """The lag of ``stream`` (``ingest_events`` or ``stream_features``) on the events topic now."""
    settings = stream_settings(config, stream)
    topic = config.kafka.events_topic.name
    committed = committed_offsets(settings.checkpoint_dir)
    low, high = kafka_watermarks(config, topic)
    lag = stream_lag(stream, topic, committed, low, high)
    log.info("%s: %d records behind %s (%s)", stream, lag.total, topic, lag.partitions)
    return lag
