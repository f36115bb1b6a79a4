"""Spark Structured Streaming source for Kafka, on Spark's Python Data Source API.

``spark.readStream.format("reelhouse-kafka")`` gives the columns of Spark's own ``kafka``
format (key, value, topic, partition, offset, timestamp). Options:

- ``kafka.bootstrap.servers`` (required) and any other ``kafka.*`` librdkafka setting;
- ``subscribe``: comma-separated topics;
- ``startingOffsets``: ``earliest`` (default), ``latest`` or JSON ``{"topic": {"0": 42}}``;
- ``maxOffsetsPerTrigger``: records per micro-batch, shared across partitions by lag;
- ``minPartitions``: split offset ranges into at least this many read tasks;
- ``pollTimeoutMs``: how long a read task waits for records it knows exist before failing;
- ``tailProbeMs``: the longest the driver waits for the real end of each partition (default 30 s;
  it usually takes one fetch round trip).

Micro-batches are deterministic: a batch is a set of per-partition offset ranges that Spark
checkpoints before reading, so a restarted query re-reads exactly the same records.

The reported end of a partition can lag the real end (see docs/streaming.md); the driver
therefore probes past it with a short fetch, so an idle topic's tail is never left unread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from reelhouse.errors import KafkaSourceError
from reelhouse.kafka.offsets import (
    OffsetMap,
    limit_offsets,
    parse_starting_offsets,
    plan_ranges,
    resolve_offsets,
    with_new_partitions,
)

log = logging.getLogger(__name__)

FORMAT_NAME = "reelhouse-kafka"
KAFKA_RECORD_DDL = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
KAFKA_RECORD_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
_ARROW_BATCH_ROWS = 65_536
# After the probe's first records, this long without more means the partition's end was reached
# (a fetch past the broker's reported end returns nothing after fetch.wait.max.ms = 50 ms).
_PROBE_QUIET_S = 0.3
_PROBE_SETTLE_S = 0.0  # reading on after every partition's end is confirmed, under traffic


@dataclass
class KafkaRange(InputPartition):
    """One read task: offsets ``[start, end)`` of one topic partition."""

    topic: str
    partition: int
    start: int
    end: int


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return FORMAT_NAME

    def schema(self) -> str:
        return KAFKA_RECORD_DDL

    def streamReader(self, schema: Any) -> KafkaStreamReader:
        return KafkaStreamReader(dict(self.options))


def _client_options(options: dict[str, str]) -> dict[str, str]:
    settings = {k[len("kafka."):]: v for k, v in options.items() if k.startswith("kafka.")}
    if "bootstrap.servers" not in settings:
        raise KafkaSourceError("option kafka.bootstrap.servers is required (host:port[,host:port])")
    return settings


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: dict[str, str]) -> None:
        # Spark hands options over case-insensitively (lower-cased); so do we.
        options = {k.lower(): v for k, v in options.items()}
        self.client_options = _client_options(options)
        topics = [t.strip() for t in options.get("subscribe", "").split(",") if t.strip()]
        if not topics:
            raise KafkaSourceError("option subscribe is required: a comma-separated list of topics")
        self.topics = topics
        self.starting = parse_starting_offsets(options.get("startingoffsets", "earliest"), topics)
        max_offsets = options.get("maxoffsetspertrigger")
        self.max_offsets = int(max_offsets) if max_offsets not in (None, "", "None") else None
        if self.max_offsets is not None and self.max_offsets < 1:
            raise KafkaSourceError(f"maxOffsetsPerTrigger must be >= 1, got {max_offsets}")
        self.min_partitions = int(options.get("minpartitions", "1"))
        self.poll_timeout_s = int(options.get("polltimeoutms", "120000")) / 1000
        self.tail_probe_s = int(options.get("tailprobems", "30000")) / 1000
        self._metadata_consumer: Any = None
        self._available_now_target: OffsetMap | None = None
        self._confirmed_ends: set[tuple[str, str]] = set()
        self._initial: OffsetMap | None = None

    # The driver-side consumer is not picklable; read tasks build their own.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_metadata_consumer"] = None
        return state

    def _consumer(self) -> Any:
        if self._metadata_consumer is None:
            from reelhouse.kafka.clients import consumer

            self._metadata_consumer = consumer(self.client_options, **{"fetch.wait.max.ms": "50"})
        return self._metadata_consumer

    def _partitions(self) -> dict[str, list[int]]:
        metadata = self._consumer().list_topics(timeout=15)
        found = {}
        for topic in self.topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                raise KafkaSourceError(f"topic {topic!r} not found at {self.client_options['bootstrap.servers']}")
            found[topic] = sorted(info.partitions)
        return found

    def _watermarks(self) -> tuple[OffsetMap, OffsetMap]:
        from confluent_kafka import TopicPartition

        low: OffsetMap = {}
        high: OffsetMap = {}
        for topic, partitions in self._partitions().items():
            low[topic], high[topic] = {}, {}
            for p in partitions:
                lo, hi = self._consumer().get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
                low[topic][str(p)], high[topic][str(p)] = lo, hi
        return low, high

    def probe_tail(self, low: OffsetMap, reported: OffsetMap) -> tuple[OffsetMap, set[tuple[str, str]]]:
        """The real end of each partition, which the broker may report short.

        The local broker's reported end can lag the records it holds, and it answers a fetch
        *at or past* that end with nothing; a fetch *below* it returns every batch from there
        on, including those past the reported end. So the probe fetches the last record the
        broker admits to (reported end - 1), waits for that record to arrive, then keeps
        reading until nothing more comes: the offset after the last record seen is the end. Under
        steady traffic something always comes, so once every partition is confirmed the probe
        reads at most ``_PROBE_SETTLE_S`` more: the end is then a recent one, and the records
        after it belong to the next batch. Also returns the partitions whose end is confirmed (empty, or its last record seen).
        """
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        ends = {topic: dict(partitions) for topic, partitions in reported.items()}
        first = {
            (t, int(p)): end - 1 for t, parts in reported.items() for p, end in parts.items() if end > low[t][p]
        }
        empty = {(t, p) for t, parts in reported.items() for p, end in parts.items() if end <= low[t][p]}
        if not first:
            return ends, empty
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in first.items()])
        waiting = set(first)
        deadline = time.monotonic() + self.tail_probe_s
        last_data = time.monotonic()
        confirmed_at: float | None = None
        try:
            while time.monotonic() < deadline:
                messages = consumer.consume(50_000, timeout=0.1)
                now = time.monotonic()
                if not waiting:
                    confirmed_at = confirmed_at or now
                    if now - confirmed_at > _PROBE_SETTLE_S:
                        break
                if not messages:
                    if not waiting and now - last_data > _PROBE_QUIET_S:
                        break
                    continue
                last_data = now
                for m in messages:
                    if m.error() is not None:
                        continue
                    key = (m.topic(), m.partition())
                    offset = m.offset()
                    if offset >= first.get(key, offset):
                        waiting.discard(key)
                    part = ends[m.topic()]
                    part[str(m.partition())] = max(part[str(m.partition())], offset + 1)
        finally:
            consumer.unassign()
        if waiting:
            log.warning(
                "tail probe: the last reported record of %s did not arrive within %.1fs; using the reported end",
                sorted(waiting), self.tail_probe_s,
            )
        return ends, empty | {(t, str(p)) for t, p in first if (t, p) not in waiting}

    def _latest(self, watermarks: tuple[OffsetMap, OffsetMap] | None = None) -> OffsetMap:
        low, high = watermarks or self._watermarks()
        ends, self._confirmed_ends = self.probe_tail(low, high)
        return ends

    def _check_not_behind(self, start: OffsetMap, latest: OffsetMap) -> None:
        """A confirmed end before what the stream already read means the topic was recreated."""
        for topic, partition in self._confirmed_ends:
            read = start.get(topic, {}).get(partition)
            if read is not None and latest[topic][partition] < read:
                raise KafkaSourceError(
                    f"{topic}[{partition}] ends at offset {latest[topic][partition]} but this stream has already "
                    f"read up to {read}: the topic was deleted and recreated (a new local stack starts with "
                    "empty topics). Start the stream from a new checkpoint (delete its checkpoint directory)."
                )

    def initialOffset(self) -> OffsetMap:
        # Spark may ask more than once before the first batch is in the checkpoint; "latest"
        # must answer the same each time or the first batch's range would be inverted.
        if self._initial is None:
            self._initial = self._initial_offsets()
        return self._initial

    def _initial_offsets(self) -> OffsetMap:
        watermarks = self._watermarks()
        low = watermarks[0]
        if self.starting == "earliest":
            return low
        latest = self._latest(watermarks)
        if self.starting == "latest":
            return latest
        return resolve_offsets(self.starting, low, latest)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadAllAvailable() if self.max_offsets is None else ReadMaxRows(self.max_offsets)

    def prepareForTriggerAvailableNow(self) -> None:
        # Available-now reads what exists now, in batches of maxOffsetsPerTrigger, then stops.
        self._available_now_target = self._latest()
        log.info("available-now target offsets: %s", self._available_now_target)

    def latestOffset(self, start: OffsetMap, limit: ReadLimit) -> OffsetMap:
        latest = self._available_now_target if self._available_now_target is not None else self._latest()
        self._check_not_behind(start, latest)
        # An unconfirmed end is the broker's report, which may lag what an earlier probe saw.
        latest = {
            topic: {p: max(end, start.get(topic, {}).get(p, end)) for p, end in parts.items()}
            for topic, parts in latest.items()
        }
        budget = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        end = limit_offsets(start, latest, budget)
        log.debug("latestOffset start=%s latest=%s end=%s", start, latest, end)
        return end

    def partitions(self, start: OffsetMap, end: OffsetMap) -> list[KafkaRange]:
        start = with_new_partitions(start, end)
        return [KafkaRange(r.topic, r.partition, r.start, r.end) for r in plan_ranges(start, end, self.min_partitions)]

    def read(self, partition: KafkaRange) -> Iterator[pa.RecordBatch]:
        return read_range(self.client_options, partition, self.poll_timeout_s)

    def commit(self, end: OffsetMap) -> None:
        # Spark's checkpoint is the source of truth for progress; nothing to commit to Kafka.
        return None

    def stop(self) -> None:
        if self._metadata_consumer is not None:
            self._metadata_consumer.close()
            self._metadata_consumer = None


_task_consumers: dict[tuple[tuple[str, str], ...], Any] = {}


def _task_consumer(client_options: dict[str, str]) -> Any:
    """One consumer per Python worker and client settings, reused by the tasks the worker runs.

    Spark reuses Python workers across tasks; building and closing a librdkafka consumer for
    every read task costs a bootstrap round trip and a close each micro-batch, which is most of
    a small batch's read time. A task takes the consumer out of the cache and puts it back when
    it finishes cleanly, so no two tasks share one.
    """
    from reelhouse.kafka.clients import consumer as make_consumer

    key = tuple(sorted(client_options.items()))
    cached = _task_consumers.pop(key, None)
    return cached if cached is not None else make_consumer(client_options)


def read_range(client_options: dict[str, str], r: KafkaRange, poll_timeout_s: float) -> Iterator[pa.RecordBatch]:
    """Read exactly the records of ``[r.start, r.end)`` of one partition as Arrow batches."""
    from confluent_kafka import KafkaError, TopicPartition

    consumer = _task_consumer(client_options)
    tp = TopicPartition(r.topic, r.partition, r.start)
    consumer.assign([tp])
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    offsets: list[int] = []
    stamps: list[int] = []
    next_offset = r.start
    last_progress = time.monotonic()
    try:
        while next_offset < r.end:
            messages = consumer.consume(min(100_000, r.end - next_offset), timeout=1.0)
            if not messages:
                position = consumer.position([tp])[0].offset
                if position >= r.end:  # the rest were control records, never delivered
                    break
                if time.monotonic() - last_progress > poll_timeout_s:
                    raise KafkaSourceError(
                        f"{r.topic}[{r.partition}]: offsets {next_offset}..{r.end} were planned but not delivered "
                        f"within {poll_timeout_s:.0f}s (broker down, or data deleted by retention)"
                    )
                continue
            last_progress = time.monotonic()
            for m in messages:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaSourceError(f"{r.topic}[{r.partition}]: {err}")
                offset = m.offset()
                if offset >= r.end:
                    next_offset = r.end
                    break
                keys.append(m.key())
                values.append(m.value())
                offsets.append(offset)
                stamps.append(m.timestamp()[1] * 1000)
                next_offset = offset + 1
            if len(offsets) >= _ARROW_BATCH_ROWS:
                yield _record_batch(r, keys, values, offsets, stamps)
                keys, values, offsets, stamps = [], [], [], []
        if offsets:
            yield _record_batch(r, keys, values, offsets, stamps)
    except BaseException:
        consumer.close()
        raise
    consumer.unassign()
    _task_consumers.setdefault(tuple(sorted(client_options.items())), consumer)


def _record_batch(r: KafkaRange, keys: list, values: list, offsets: list, stamps: list) -> pa.RecordBatch:
    n = len(offsets)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            pa.array([r.topic] * n, pa.string()),
            pa.array([r.partition] * n, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.array(stamps, pa.timestamp("us", tz="UTC")),
        ],
        schema=KAFKA_RECORD_SCHEMA,
    )


def read_kafka_stream(spark: Any, kafka_options: dict[str, str], native: bool) -> Any:
    """A streaming DataFrame of Kafka records through our source or, where its jar exists, Spark's own."""
    reader = spark.readStream.format("kafka" if native else FORMAT_NAME)
    for key, value in kafka_options.items():
        reader = reader.option(key, value)
    frame = reader.load()
    return frame.select("key", "value", "topic", "partition", "offset", "timestamp")
