"""Stream lag from a checkpoint laid out as Spark writes it, and the broker's offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.orchestration.lag import (
    DEFAULT_MAX_LAG,
    committed_offsets,
    max_lag_default,
    parse_offset_log,
    stream_lag,
)
from reelhouse.orchestration.settings import project_dir

TOPIC = "reelhouse.events"
METADATA = {"batchWatermarkMs": 0, "batchTimestampMs": 1795253094140, "conf": {"spark.sql.shuffle.partitions": "4"}}


def offset_entry(*sources: dict | None) -> str:
    """An ``offsets/N`` file: version, batch metadata, then one line per source ("-": no offsets yet)."""
    lines = ["v1", json.dumps(METADATA)] + ["-" if s is None else json.dumps(s) for s in sources]
    return "\n".join(lines)


def write_checkpoint(root: Path, offsets: dict[int, str], commits: list[int]) -> Path:
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    (root / "metadata").write_text('{"id":"8a956cfb-8727-4262-9b0b-5abda5c21643"}')
    for batch, text in offsets.items():
        (root / "offsets" / str(batch)).write_text(text)
        (root / "offsets" / f".{batch}.crc").write_bytes(b"crc")
    for batch in commits:
        (root / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')
        (root / "commits" / f".{batch}.crc").write_bytes(b"crc")
    return root


def test_committed_offsets_are_those_of_the_last_committed_batch(tmp_path):
    checkpoint = write_checkpoint(
        tmp_path / "ingest_events",
        {
            0: offset_entry({TOPIC: {"0": 10, "1": 12}}),
            1: offset_entry({TOPIC: {"0": 25, "1": 30}}),
            # Batch 2 is planned (its offsets are logged first) but not committed: not read yet.
            2: offset_entry({TOPIC: {"0": 90, "1": 95}}),
        },
        commits=[0, 1],
    )
    (checkpoint / "commits" / "2.tmp").write_text("half written")  # Spark's temporary files are ignored

    assert committed_offsets(str(checkpoint)) == {TOPIC: {"0": 25, "1": 30}}


def test_a_query_that_never_committed_has_no_offsets(tmp_path):
    assert committed_offsets(str(tmp_path / "never-started")) is None
    fresh = write_checkpoint(tmp_path / "fresh", {0: offset_entry({TOPIC: {"0": 5}})}, commits=[])
    assert committed_offsets(str(fresh)) is None


def test_batch_ids_compare_as_numbers(tmp_path):
    # "10" sorts before "9" as text; batch 10 is the later one.
    checkpoint = write_checkpoint(
        tmp_path / "c",
        {9: offset_entry({TOPIC: {"0": 9}}), 10: offset_entry({TOPIC: {"0": 10}})},
        commits=[9, 10],
    )
    assert committed_offsets(str(checkpoint)) == {TOPIC: {"0": 10}}


def test_offsets_of_several_sources_are_merged_and_missing_ones_skipped():
    text = offset_entry({TOPIC: {"0": 3}}, None, {"other.topic": {"0": 7, "1": 8}})
    assert parse_offset_log(text) == {TOPIC: {"0": 3}, "other.topic": {"0": 7, "1": 8}}


def test_a_file_that_is_not_an_offset_log_is_an_error():
    with pytest.raises(ReelhouseError, match="not a Spark offset log"):
        parse_offset_log('{"reelhouse.events": {"0": 1}}')


def test_lag_is_end_minus_committed_per_partition():
    committed = {TOPIC: {"0": 25, "1": 30}}
    lag = stream_lag("ingest_events", TOPIC, committed, low={"0": 0, "1": 0}, high={"0": 40, "1": 30})

    assert lag.partitions == {"0": 15, "1": 0}
    assert lag.total == 15
    assert lag.to_dict()["total"] == 15


def test_a_new_partition_and_a_trimmed_log_count_from_the_first_offset_kept():
    committed = {TOPIC: {"0": 25, "1": 30}}
    # Partition 1's records before 50 were deleted (retention) before the query read them: they
    # can never be read, so they are not lag. Partition 2 was added after the query last committed.
    lag = stream_lag("ingest_events", TOPIC, committed, low={"0": 0, "1": 50, "2": 4}, high={"0": 25, "1": 60, "2": 9})

    assert lag.partitions == {"0": 0, "1": 10, "2": 5}


def test_a_query_without_a_commit_is_behind_by_everything_kept():
    lag = stream_lag("stream_features", TOPIC, None, low={"0": 3, "1": 0}, high={"0": 10, "1": 4})

    assert lag.partitions == {"0": 7, "1": 4}
    assert lag.committed is None


def test_a_position_past_the_end_is_no_lag():
    # A topic deleted and created again starts at 0 below the checkpoint's position: the stream
    # itself reports that as data loss; the lag check does not count it as negative lag.
    lag = stream_lag("ingest_events", TOPIC, {TOPIC: {"0": 12}}, low={"0": 0}, high={"0": 10})

    assert lag.partitions == {"0": 0}


def test_the_default_bound_is_one_micro_batch():
    config = load_config(project_dir() / "conf" / "local.yaml", environ={})

    assert max_lag_default(config, "ingest_events") == config.ingest.max_offsets_per_trigger == 2_000_000
    assert max_lag_default(config, "stream_features") == config.speed.max_offsets_per_trigger
    unbounded = load_config(
        project_dir() / "conf" / "local.yaml", environ={"REELHOUSE__INGEST__MAX_OFFSETS_PER_TRIGGER": "null"}
    )
    assert max_lag_default(unbounded, "ingest_events") == DEFAULT_MAX_LAG
