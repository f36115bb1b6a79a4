"""Offset arithmetic for the Kafka source: pure functions, no network.

An offset map is ``{topic: {partition (str): next offset to read}}`` (JSON keys are strings;
Spark checkpoints these maps verbatim). A range ``[start, end)`` of one partition becomes one
or more :class:`OffsetRange` read tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from reelhouse.errors import KafkaSourceError

OffsetMap = dict[str, dict[str, int]]

EARLIEST = -2
LATEST = -1


@dataclass(frozen=True, order=True)
class OffsetRange:
    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_starting_offsets(spec: str, topics: list[str]) -> str | OffsetMap:
    """``earliest`` / ``latest`` or Spark-style JSON ``{"topic": {"0": 23, "1": -2}}``.

    In JSON, -2 means earliest and -1 latest for that partition; topics not named start at earliest.
    """
    text = spec.strip()
    if text in ("earliest", "latest"):
        return text
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        raise KafkaSourceError(f"startingOffsets must be earliest, latest or JSON, got {spec!r}: {e}") from e
    if not isinstance(parsed, dict):
        raise KafkaSourceError(f"startingOffsets JSON must be an object of topics, got {spec!r}")
    result: OffsetMap = {}
    for topic, partitions in parsed.items():
        if topic not in topics:
            raise KafkaSourceError(f"startingOffsets names topic {topic!r}, which is not subscribed ({topics})")
        if not isinstance(partitions, dict):
            raise KafkaSourceError(f"startingOffsets for {topic!r} must map partitions to offsets")
        result[topic] = {}
        for partition, offset in partitions.items():
            key = str(partition)
            # isascii: str.isdigit() also accepts digits such as "²" that int() rejects.
            numeric = key.isascii() and key.isdigit()
            if not numeric or not isinstance(offset, int) or isinstance(offset, bool) or offset < -2:
                raise KafkaSourceError(
                    f"startingOffsets {topic}[{partition}]={offset!r}: partitions are numbers, offsets >= -2"
                )
            result[topic][str(int(key))] = offset
    return result


def resolve_offsets(requested: OffsetMap, earliest: OffsetMap, latest: OffsetMap) -> OffsetMap:
    """Replace -2/-1 by the partition's earliest/latest offset; unnamed partitions start at earliest."""
    resolved: OffsetMap = {}
    for topic, partitions in earliest.items():
        resolved[topic] = {}
        for partition, low in partitions.items():
            wanted = requested.get(topic, {}).get(partition, EARLIEST)
            if wanted == EARLIEST:
                resolved[topic][partition] = low
            elif wanted == LATEST:
                resolved[topic][partition] = latest[topic][partition]
            else:
                resolved[topic][partition] = wanted
    for topic, partitions in requested.items():
        for partition in partitions:
            if partition not in earliest.get(topic, {}):
                raise KafkaSourceError(f"startingOffsets names {topic}[{partition}], which does not exist")
    return resolved


def with_new_partitions(start: OffsetMap, current: OffsetMap) -> OffsetMap:
    """Partitions present in ``current`` but unknown to ``start`` start at offset 0 (their beginning)."""
    merged = {topic: dict(partitions) for topic, partitions in start.items()}
    for topic, partitions in current.items():
        known = merged.setdefault(topic, {})
        for partition in partitions:
            known.setdefault(partition, 0)
    return merged


def limit_offsets(start: OffsetMap, latest: OffsetMap, max_records: int | None) -> OffsetMap:
    """End offsets reading at most ``max_records`` records in total, shared by lag.

    Each partition gets a share of the budget proportional to its lag (as Spark's Kafka source
    does), rounded down, and at least one record while it has any, so no partition starves.
    """
    start = with_new_partitions(start, latest)
    lags = {
        (topic, partition): max(0, latest[topic][partition] - start[topic][partition])
        for topic, partitions in latest.items()
        for partition in partitions
    }
    total = sum(lags.values())
    end: OffsetMap = {topic: dict(partitions) for topic, partitions in start.items()}
    for (topic, partition), lag in lags.items():
        if max_records is None or total <= max_records:
            take = lag
        else:
            take = min(lag, max(1, lag * max_records // total)) if lag else 0
        end[topic][partition] = start[topic][partition] + take
    return end


def plan_ranges(start: OffsetMap, end: OffsetMap, min_partitions: int = 1) -> list[OffsetRange]:
    """Split ``[start, end)`` into read tasks, deterministic for the same offsets.

    One task per partition with data; when that is fewer than ``min_partitions``, partitions are
    cut into near-equal pieces (sizes differ by at most one) until there are ``min_partitions``
    tasks, or one per record, so a topic with few partitions still uses every core.
    """
    ranges = []
    for topic, partitions in sorted(end.items()):
        for partition, stop in sorted(partitions.items(), key=lambda kv: int(kv[0])):
            begin = start.get(topic, {}).get(partition, 0)
            if stop < begin:
                raise KafkaSourceError(
                    f"{topic}[{partition}] end offset {stop} is before start {begin}: "
                    "was the topic deleted and recreated? Start the stream with a new checkpoint."
                )
            if stop > begin:
                ranges.append(OffsetRange(topic, int(partition), begin, stop))
    total = sum(r.size for r in ranges)
    if not ranges or len(ranges) >= min_partitions:
        return ranges
    # Rounding each range's share on its own can fall short (three equal ranges, four tasks
    # wanted: round(4/3) = 1 each), so hand out the remainder to the largest fractions.
    target = min(min_partitions, total)
    shares = [r.size * target // total for r in ranges]
    remainders = sorted(range(len(ranges)), key=lambda i: (-(ranges[i].size * target % total), i))
    for i in remainders[: target - sum(shares)]:
        shares[i] += 1
    pieces = []
    for r, share in zip(ranges, shares, strict=True):
        share = max(1, share)  # never more than r.size: share <= ceil(r.size * target / total)
        bounds = [r.start + k * r.size // share for k in range(share + 1)]
        pieces.extend(OffsetRange(r.topic, r.partition, lo, hi) for lo, hi in zip(bounds, bounds[1:]))
    return pieces


def total_records(start: OffsetMap, end: OffsetMap) -> int:
    return sum(
        stop - start.get(topic, {}).get(partition, 0)
        for topic, partitions in end.items()
        for partition, stop in partitions.items()
    )
