"""TableFileWriter writes Delta-ready parquet files; Lake commits them idempotently (delta-rs, local disk)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.config import LakeConfig
from reelhouse.events.contract import BRONZE_SCHEMA, ValidationLimits, encode_event, make_event
from reelhouse.events.records import split_records
from reelhouse.lake import AppTransaction, FileAction, Lake, TableFileWriter, TableSpec
from reelhouse.lake.files import FILE_ACTION_SCHEMA
from reelhouse.lake.tables import BRONZE_EVENTS
from reelhouse.streaming.kafka_source import KAFKA_RECORD_SCHEMA

UTC = dt.UTC
SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("watch_ms", pa.int64()),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)
SPEC = TableSpec("plays", SCHEMA, ("event_date",), "test table")
NOV21, NOV22 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)


def at(day: int, hour: int, micro: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, 0, micro, tzinfo=UTC)


def rows(*specs: tuple[str, dt.datetime, int | None]) -> pa.Table:
    """Rows of (event_id, event_time, watch_ms); event_date is the UTC date of event_time."""
    return pa.Table.from_pylist(
        [{"event_id": i, "event_time": t, "watch_ms": w, "event_date": t.date()} for i, t, w in specs], schema=SCHEMA
    )


# Three rows over two days: two on the 21st, one (with a null watch_ms) on the 22nd.
BATCH = rows(("a", at(21, 8), 100), ("b", at(21, 23, 500), 900), ("c", at(22, 1), None))


def writer(root: Path, partition_by: tuple[str, ...] = ("event_date",), target_file_rows: int = 1_000_000) -> TableFileWriter:
    return TableFileWriter("plays", str(root / "plays"), SCHEMA, partition_by, target_file_rows=target_file_rows)


def by_date(actions: list[FileAction]) -> dict[str | None, FileAction]:
    return {a.partition_values["event_date"]: a for a in actions}


# ---------------------------------------------------------------------------------- files


def test_a_partitioned_write_makes_hive_style_folders(tmp_path):
    actions = writer(tmp_path).write(BATCH)
    assert len(actions) == 2
    assert {a.table for a in actions} == {"plays"}
    assert sorted((a.partition_values for a in actions), key=str) == [
        {"event_date": "2026-11-21"},
        {"event_date": "2026-11-22"},
    ]
    for action in actions:
        folder, name = action.path.split("/")
        assert folder == f"event_date={action.partition_values['event_date']}"
        assert name.startswith("part-") and name.endswith(".parquet")
        file = tmp_path / "plays" / action.path
        assert file.is_file()
        assert action.size == file.stat().st_size
        assert action.modification_time > 1_700_000_000_000  # epoch ms, not seconds


def test_files_hold_their_partitions_rows_without_the_partition_column(tmp_path):
    actions = by_date(writer(tmp_path).write(BATCH))
    file21 = pq.ParquetFile(tmp_path / "plays" / actions["2026-11-21"].path)
    assert file21.schema_arrow.names == ["event_id", "event_time", "watch_ms"]
    assert file21.read().to_pydict() == {
        "event_id": ["a", "b"],
        "event_time": [at(21, 8), at(21, 23, 500)],
        "watch_ms": [100, 900],
    }
    file22 = pq.ParquetFile(tmp_path / "plays" / actions["2026-11-22"].path)
    assert file22.read().to_pydict()["event_id"] == ["c"]


def test_stats_hold_count_min_max_and_null_count_with_utc_timestamps(tmp_path):
    actions = by_date(writer(tmp_path).write(BATCH))
    stats21 = json.loads(actions["2026-11-21"].stats)
    assert stats21 == {
        "numRecords": 2,
        # Timestamps in UTC with a trailing Z, truncated down to milliseconds as the Delta protocol
        # requires (b's 23:00:00.000500 gives max 23:00:00.000; readers widen a max by 1 ms).
        "minValues": {"event_id": "a", "event_time": "2026-11-21T08:00:00.000Z", "watch_ms": 100},
        "maxValues": {"event_id": "b", "event_time": "2026-11-21T23:00:00.000Z", "watch_ms": 900},
        "nullCount": {"event_id": 0, "event_time": 0, "watch_ms": 0},
    }
    stats22 = json.loads(actions["2026-11-22"].stats)
    # An all-null column has a null count but no min/max.
    assert stats22["nullCount"]["watch_ms"] == 1
    assert "watch_ms" not in stats22["minValues"] and "watch_ms" not in stats22["maxValues"]
    assert stats22["minValues"]["event_time"].endswith("Z")


def test_an_unpartitioned_table_writes_at_the_root_and_keeps_every_column(tmp_path):
    (action,) = writer(tmp_path, partition_by=()).write(BATCH)
    assert "/" not in action.path and action.partition_values == {}
    stats = json.loads(action.stats)
    assert stats["numRecords"] == 3
    # Dates are stats values too (ISO, no Z); event_date is a data column here.
    assert (stats["minValues"]["event_date"], stats["maxValues"]["event_date"]) == ("2026-11-21", "2026-11-22")
    assert pq.ParquetFile(tmp_path / "plays" / action.path).schema_arrow.names == SCHEMA.names


def test_target_file_rows_splits_files(tmp_path):
    many = rows(*[(f"e{i}", at(21, 1, i), i) for i in range(5)])
    actions = writer(tmp_path, partition_by=(), target_file_rows=2).write(many)
    # 5 rows at 2 per file: 2 + 2 + 1, nothing lost, each file distinct.
    assert [json.loads(a.stats)["numRecords"] for a in actions] == [2, 2, 1]
    assert len({a.path for a in actions}) == 3
    read_back = pa.concat_tables(pq.read_table(tmp_path / "plays" / a.path) for a in actions)
    assert read_back["event_id"].to_pylist() == ["e0", "e1", "e2", "e3", "e4"]


def test_an_empty_input_writes_nothing(tmp_path):
    assert writer(tmp_path).write(SCHEMA.empty_table()) == []
    assert not (tmp_path / "plays").exists()


def test_a_null_partition_value_goes_to_the_hive_default_partition(tmp_path):
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("region", pa.string())])
    table = pa.table({"id": [1, 2], "region": ["eu", None]}, schema=schema)
    actions = TableFileWriter("t", str(tmp_path / "t"), schema, ("region",)).write(table)
    paths = {a.partition_values["region"]: a.path for a in actions}
    assert set(paths) == {"eu", None}
    assert paths[None].startswith("region=__HIVE_DEFAULT_PARTITION__/")
    assert paths["eu"].startswith("region=eu/")


@pytest.mark.parametrize("value", ["a/b", "x y", "", "a=b", "%2F", "ü"])
def test_unsafe_partition_values_are_rejected(tmp_path, value):
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("region", pa.string())])
    table = pa.table({"id": [1], "region": [value]}, schema=schema)
    with pytest.raises(ValueError, match="partition value"):
        TableFileWriter("t", str(tmp_path / "t"), schema, ("region",)).write(table)


# ---------------------------------------------------------------------------------- conform


def test_conform_casts_spark_etc_utc_to_utc_and_orders_and_selects_columns(tmp_path):
    spark_like = pa.table(
        {
            "extra": [1],
            "event_date": pa.array([NOV21], pa.date32()),
            "watch_ms": pa.array([5], pa.int32()),
            "event_time": pa.array([at(21, 8)], pa.timestamp("us", tz="Etc/UTC")),
            "event_id": ["a"],
        }
    )
    conformed = writer(tmp_path).conform(spark_like.to_batches()[0])
    assert conformed.schema.equals(SCHEMA)
    assert conformed.to_pylist() == [{"event_id": "a", "event_time": at(21, 8), "watch_ms": 5, "event_date": NOV21}]


def test_conform_rejects_missing_columns(tmp_path):
    with pytest.raises(ValueError, match=r"plays: rows lack columns \['watch_ms', 'event_date'\]"):
        writer(tmp_path).conform(BATCH.select(["event_id", "event_time"]))


# ---------------------------------------------------------------------------------- FileAction


def test_file_action_round_trips_through_its_row_form():
    action = FileAction("plays", "event_date=2026-11-21/part-1.zstd.parquet", 1234,
                        {"event_date": "2026-11-21", "hour": None}, 1_795_237_212_964, '{"numRecords": 2}')
    row = action.to_row()
    assert row["partition_values"] == '{"event_date": "2026-11-21", "hour": null}'
    # The trip Lake.write_files makes: executor row -> Arrow batch -> driver.
    batch = pa.RecordBatch.from_pylist([row], schema=FILE_ACTION_SCHEMA)
    assert FileAction.from_row(batch.to_pylist()[0]) == action
    assert FileAction.from_row(row) == action


# ---------------------------------------------------------------------------------- commits (delta-rs)


def delta_rows(lake: Lake, name: str) -> list[dict]:
    table = deltalake.DeltaTable(lake.uri(name)).to_pyarrow_table()
    return sorted(pa.table(table).to_pylist(), key=lambda r: r["event_id"])


def test_committed_files_read_back_with_rows_and_partition_values_intact(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    actions = lake.file_writer(SPEC).write(BATCH)
    result = lake.commit(SPEC, actions, txn=AppTransaction("app", 0))
    # Version 0 is the empty table ensure_table creates; the data is version 1.
    assert (result.table, result.version, result.files, result.rows, result.skipped) == ("plays", 1, 2, 3, False)
    assert delta_rows(lake, "plays") == BATCH.to_pylist()
    assert deltalake.DeltaTable(lake.uri("plays")).metadata().partition_columns == ["event_date"]
    assert lake.committed_version("plays", "app") == 0


def test_committing_the_same_app_transaction_again_is_skipped(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.commit(SPEC, lake.file_writer(SPEC).write(BATCH), txn=AppTransaction("app", 0))
    # A replayed micro-batch rewrites its files; the commit must not add them a second time.
    replay = lake.commit(SPEC, lake.file_writer(SPEC).write(BATCH), txn=AppTransaction("app", 0))
    assert replay.skipped and (replay.version, replay.files, replay.rows) == (None, 0, 0)
    assert lake.version("plays") == 1
    assert len(delta_rows(lake, "plays")) == 3
    # An older version of the same app is skipped too; another app is independent.
    assert lake.commit(SPEC, [], txn=AppTransaction("app", -1)).skipped
    assert lake.committed_version("plays", "other-app") is None

    later = rows(("d", at(22, 5), 7))
    result = lake.commit(SPEC, lake.file_writer(SPEC).write(later), txn=AppTransaction("app", 1))
    assert (result.version, result.rows, result.skipped) == (2, 1, False)
    assert [r["event_id"] for r in delta_rows(lake, "plays")] == ["a", "b", "c", "d"]
    assert lake.committed_version("plays", "app") == 1


def test_time_travel_reads_an_older_snapshot(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.commit(SPEC, lake.file_writer(SPEC).write(BATCH), txn=AppTransaction("app", 0))
    lake.commit(SPEC, lake.file_writer(SPEC).write(rows(("d", at(22, 5), 7))), txn=AppTransaction("app", 1))
    old, latest = lake.snapshot("plays", version=1), lake.snapshot("plays")
    assert (old.version(), latest.version()) == (1, 2)
    assert sorted(old.to_pyarrow_table()["event_id"].to_pylist()) == ["a", "b", "c"]
    assert sorted(latest.to_pyarrow_table()["event_id"].to_pylist()) == ["a", "b", "c", "d"]
    assert lake.to_arrow("plays", version=0).num_rows == 0  # the empty table as created


def test_bronze_rows_from_split_records_commit_and_read_back_in_the_bronze_schema(tmp_path):
    # The real pipeline's shapes end to end: Kafka records -> bronze rows -> parquet -> Delta.
    broker_time = at(21, 12)
    value = encode_event(
        make_event(
            event_id="e1", event_type="like", user_id="u1", video_id="v1",
            event_time_ms=int(at(21, 11).timestamp() * 1000), session_id="s1",
            device={"os": "web", "app_version": "1.0", "country": "DE", "network": "ethernet"},
        )
    )
    records = pa.Table.from_pylist(
        [{"key": b"u1", "value": value, "topic": "events", "partition": 0, "offset": 41, "timestamp": broker_time}],
        schema=KAFKA_RECORD_SCHEMA,
    )
    bronze, _ = split_records(records, ValidationLimits())
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.commit(BRONZE_EVENTS, lake.file_writer(BRONZE_EVENTS).write(bronze), txn=AppTransaction("ingest", 0))
    read_back = lake.to_arrow("bronze_events")
    assert read_back.select(BRONZE_SCHEMA.names).to_pylist() == bronze.to_pylist()
    assert (tmp_path / "bronze_events" / "event_date=2026-11-21").is_dir()
