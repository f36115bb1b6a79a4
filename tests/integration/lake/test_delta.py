"""The lake API on real Delta tables: delta-spark writes and reads, delta-rs and Polars read the same tables back."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import deltalake
import polars as pl
import pyarrow as pa
import pytest

from reelhouse.config import LakeConfig
from reelhouse.errors import LakeError
from reelhouse.events.contract import ValidationLimits, encode_event, make_event
from reelhouse.events.records import KAFKA_RECORD_SCHEMA, split_records
from reelhouse.lake import AppTransaction, Lake, TableSpec, commit_metadata
from reelhouse.streaming.tables import BRONZE_EVENTS

pytestmark = pytest.mark.integration

UTC = dt.UTC
SPEC = TableSpec(
    "clicks",
    pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("at", pa.timestamp("us", tz="UTC")),
            pa.field("day", pa.date32(), nullable=False),
        ]
    ),
    ("day",),
    "clicks for the lake tests",
)
# Keyed by id, partitioned by a string hour: the shape of silver and the dimension tables.
HOURLY = TableSpec(
    "plays",
    pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("watch_ms", pa.int64()),
            pa.field("hour", pa.string(), nullable=False),
        ]
    ),
    ("hour",),
)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(LakeConfig(root=str(tmp_path)))


def _frame(spark, ids, day="2026-11-20"):
    return spark.sql(
        f"SELECT id, timestamp'{day} 10:00:00' + make_interval(0,0,0,0,0,0,id) AS at, date'{day}' AS day "
        f"FROM VALUES {', '.join(f'({i})' for i in ids)} AS t(id)"
    )


def _plays(spark, *rows: tuple[str, int | None, str]):
    return spark.createDataFrame(list(rows), "id string, watch_ms long, hour string")


def _rows(lake: Lake, name: str) -> list[tuple]:
    """The table as delta-rs (a second reader) sees it, sorted."""
    return sorted(tuple(r.values()) for r in lake.to_arrow(name).to_pylist())


def test_a_micro_batch_written_twice_adds_its_rows_once(spark, lake):
    txn = AppTransaction("ingest:query-1", 0)

    first = lake.append(_frame(spark, range(100)), SPEC, txn)
    replay = lake.append(_frame(spark, range(100)), SPEC, txn)

    # Version 0 is the empty table ensure_table creates; the batch is version 1.
    assert (first.version, first.rows, first.skipped) == (1, 100, False) and first.files >= 1
    assert replay.skipped and (replay.version, replay.rows) == (None, 0)
    assert lake.version("clicks", spark) == 1 and lake.version("clicks") == 1
    assert lake.read(spark, "clicks").count() == 100
    assert lake.committed_version("clicks", "ingest:query-1", spark) == 0
    assert lake.committed_version("clicks", "ingest:query-1") == 0  # delta-rs reads Delta's txn too
    assert lake.committed_version("clicks", "other-app", spark) is None

    later = lake.append(_frame(spark, range(100, 103)), SPEC, AppTransaction("ingest:query-1", 1))
    older = lake.append(_frame(spark, range(5)), SPEC, AppTransaction("ingest:query-1", 0))
    assert (later.version, later.rows) == (2, 3) and older.skipped


def test_ensure_table_creates_the_spec_once_with_its_partitioning_and_description(spark, lake):
    assert not lake.exists("clicks", spark) and not lake.exists("clicks")

    lake.ensure_table(spark, SPEC)
    lake.ensure_table(spark, SPEC)

    assert lake.exists("clicks", spark) and lake.version("clicks", spark) == 0
    metadata = deltalake.DeltaTable(lake.uri("clicks")).metadata()
    assert (metadata.partition_columns, metadata.description) == (["day"], "clicks for the lake tests")
    assert lake.read(spark, "clicks").schema.simpleString() == "struct<id:bigint,at:timestamp,day:date>"


def test_time_travel_by_version_and_timestamp(spark, lake):
    lake.append(_frame(spark, range(10)), SPEC, AppTransaction("app", 0))
    between = dt.datetime.now(UTC)
    time.sleep(1.1)  # commit timestamps are file times; keep the two commits apart
    lake.append(_frame(spark, range(10, 25), day="2026-11-21"), SPEC, AppTransaction("app", 1))

    assert lake.read(spark, "clicks").count() == 25
    assert lake.read(spark, "clicks", version=1).count() == 10
    assert lake.read(spark, "clicks", timestamp=between).count() == 10
    days = {r["day"].isoformat() for r in lake.read(spark, "clicks").select("day").distinct().collect()}
    assert days == {"2026-11-20", "2026-11-21"}
    with pytest.raises(LakeError, match="does not exist"):
        lake.read(spark, "nowhere")


def test_a_table_delta_spark_wrote_reads_back_equal_with_delta_rs_and_polars(spark, lake):
    # A timestamp column (UTC micros, one null) and a date partition column: the shapes readers get wrong.
    frame = _frame(spark, range(50)).unionByName(
        spark.sql("SELECT 50L AS id, CAST(NULL AS timestamp) AS at, date'2026-11-21' AS day")
    )
    lake.append(frame, SPEC, AppTransaction("app", 0))

    # Spark's own rows, as Arrow: instants in UTC whatever this process's time zone.
    expected = sorted(tuple(r.values()) for r in lake.read_arrow(spark, "clicks").to_pylist())
    with_delta_rs = lake.to_arrow("clicks")
    with_polars = pl.read_delta(lake.uri("clicks")).sort("id")

    assert len(expected) == 51 and expected[0][1] == dt.datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert sorted(tuple(r.values()) for r in with_delta_rs.to_pylist()) == expected
    assert [tuple(r) for r in with_polars.iter_rows()] == expected
    assert with_delta_rs.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert with_polars["at"].dtype == pl.Datetime("us", "UTC")
    assert with_polars["day"].dtype == pl.Date


def test_overwrite_replaces_the_snapshot_keeps_history_and_records_its_metadata(spark, lake):
    lake.append(_frame(spark, range(30)), SPEC)
    result = lake.overwrite(_frame(spark, range(5)), SPEC, metadata={"built_from": {"silver": 7}, "note": "x"})

    assert (result.version, result.rows) == (2, 5)
    assert lake.read(spark, "clicks").count() == 5
    assert lake.read(spark, "clicks", version=1).count() == 30
    for history in (lake.history("clicks", spark=spark), lake.history("clicks")):
        newest = history[0]
        assert (newest["version"], newest["operation"]) == (2, "WRITE")
        recorded = commit_metadata(newest)
        assert (recorded["built_from"], recorded["note"]) == ({"silver": 7}, "x")


def test_replace_partitions_rewrites_exactly_the_listed_partitions(spark, lake):
    lake.append(_plays(spark, ("a", 1, "h1"), ("b", 2, "h2"), ("c", 3, "h3")), HOURLY)

    # h2 is rewritten, h3 is listed without rows (it ends empty), h1 is not listed (untouched).
    result = lake.replace_partitions(_plays(spark, ("b", 20, "h2"), ("d", 4, "h2")), HOURLY, "hour", ["h2", "h3"])
    again = lake.replace_partitions(_plays(spark, ("b", 20, "h2"), ("d", 4, "h2")), HOURLY, "hour", ["h2", "h3"])

    assert result.rows == 2 and again.version == result.version + 1
    assert _rows(lake, "plays") == [("a", 1, "h1"), ("b", 20, "h2"), ("d", 4, "h2")]

    # Nothing to remove and nothing to add: Delta commits nothing, and the write says so.
    idle = lake.replace_partitions(_plays(spark), HOURLY, "hour", ["h7"])
    assert (idle.version, idle.rows, idle.skipped) == (again.version, 0, False)


def test_replace_partitions_refuses_rows_outside_the_listed_partitions_and_commits_nothing(spark, lake):
    lake.append(_plays(spark, ("a", 1, "h1")), HOURLY)
    version = lake.version("plays", spark)

    with pytest.raises(LakeError, match="outside the partitions it replaces"):
        lake.replace_partitions(_plays(spark, ("b", 2, "h1"), ("x", 9, "h9")), HOURLY, "hour", ["h1"])
    with pytest.raises(LakeError, match="not partitioned by 'id'"):
        lake.replace_partitions(_plays(spark, ("b", 2, "h1")), HOURLY, "id", ["b"])

    assert lake.version("plays", spark) == version and _rows(lake, "plays") == [("a", 1, "h1")]


def test_merge_inserts_new_keys_updates_changed_ones_and_leaves_the_rest(spark, lake):
    lake.append(_plays(spark, ("a", 1, "h1"), ("b", 2, "h1"), ("c", None, "h1")), HOURLY)

    # a: unchanged; c: null -> 3 (a change, though null = 3 is not false); d: new.
    result = lake.merge(_plays(spark, ("a", 1, "h1"), ("c", 3, "h1"), ("d", 4, "h1")), HOURLY, ["id"], ["watch_ms"])

    assert (result.metrics["num_inserted_rows"], result.metrics["num_updated_rows"]) == ("1", "1")
    assert result.rows == 2 and result.version == 2
    assert _rows(lake, "plays") == [("a", 1, "h1"), ("b", 2, "h1"), ("c", 3, "h1"), ("d", 4, "h1")]

    unchanged = lake.merge(_plays(spark, ("a", 1, "h1")), HOURLY, ["id"], ["watch_ms"])
    assert unchanged.rows == 0


def test_rows_built_on_the_driver_write_through_the_same_path(spark, lake):
    # Arrow rows in another column order, with ms timestamps and an int32: cast to the spec.
    rows = pa.table(
        {
            "day": pa.array([dt.date(2026, 11, 20)] * 2, pa.date32()),
            "at": pa.array([dt.datetime(2026, 11, 20, 10, tzinfo=UTC), None], pa.timestamp("ms", tz="UTC")),
            "id": pa.array([1, 2], pa.int32()),
        }
    )
    first = lake.write_arrow(spark, rows, SPEC, txn=AppTransaction("builder", 0), metadata={"k": 1})
    replay = lake.write_arrow(spark, rows, SPEC, txn=AppTransaction("builder", 0))
    replaced = lake.write_arrow(spark, rows.slice(0, 1), SPEC, mode="overwrite")
    empty = lake.write_arrow(spark, rows.slice(0, 0), SPEC, mode="overwrite")

    assert (first.rows, replay.skipped, replaced.rows, empty.rows) == (2, True, 1, 0)
    assert lake.to_arrow("clicks", version=replaced.version).to_pylist() == [
        {"id": 1, "at": dt.datetime(2026, 11, 20, 10, tzinfo=UTC), "day": dt.date(2026, 11, 20)}
    ]
    assert lake.to_arrow("clicks").num_rows == 0
    with pytest.raises(LakeError, match=r"rows lack columns \['at'\]"):
        lake.write_arrow(spark, rows.drop_columns(["at"]), SPEC)


def test_every_row_of_a_table_concatenated_from_empty_and_full_parts_is_written(spark, lake):
    # Builders concatenate per-source tables, some empty; PySpark alone drops rows of such tables.
    empty = SPEC.schema.empty_table()
    part = pa.table({"id": [1, 2], "at": [None, None], "day": [dt.date(2026, 11, 20)] * 2}, schema=SPEC.schema)

    result = lake.write_arrow(spark, pa.concat_tables([empty, empty, part, empty, part]), SPEC)

    assert result.rows == 4 and lake.to_arrow("clicks").num_rows == 4


def test_bronze_rows_from_split_records_write_and_read_back_in_the_bronze_schema(spark, lake):
    # The real pipeline's shapes end to end: Kafka records -> bronze rows -> Delta -> delta-rs.
    broker_time = dt.datetime(2026, 11, 21, 12, tzinfo=UTC)
    value = encode_event(
        make_event(
            event_id="e1",
            event_type="like",
            user_id="u1",
            video_id="v1",
            event_time_ms=int(dt.datetime(2026, 11, 21, 11, tzinfo=UTC).timestamp() * 1000),
            session_id="s1",
            device={"os": "web", "app_version": "1.0", "country": "DE", "network": "ethernet"},
        )
    )
    records = pa.Table.from_pylist(
        [{"key": b"u1", "value": value, "topic": "events", "partition": 0, "offset": 41, "timestamp": broker_time}],
        schema=KAFKA_RECORD_SCHEMA,
    )
    bronze, _ = split_records(records, ValidationLimits())

    lake.write_arrow(spark, bronze, BRONZE_EVENTS, txn=AppTransaction("ingest", 0))

    read_back = lake.to_arrow("bronze_events")
    assert read_back.select(bronze.schema.names).to_pylist() == bronze.to_pylist()
    assert (Path(lake.uri("bronze_events")) / "event_date=2026-11-21").is_dir()
