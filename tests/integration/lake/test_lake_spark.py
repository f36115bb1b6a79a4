"""The lake API with Spark executors writing and delta-rs committing, on real Delta tables."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pyarrow as pa
import pytest

from reelhouse.config import LakeConfig
from reelhouse.lake import AppTransaction, Lake, TableSpec

pytestmark = pytest.mark.integration

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
)


def _frame(spark, ids, day="2026-11-20"):
    return spark.sql(
        f"SELECT id, timestamp'{day} 10:00:00' + make_interval(0,0,0,0,0,0,id) AS at, date'{day}' AS day "
        f"FROM VALUES {', '.join(f'({i})' for i in ids)} AS t(id)"
    )


def test_a_micro_batch_committed_twice_adds_its_rows_once(spark, tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    txn = AppTransaction("ingest:query-1", 0)

    first = lake.append(_frame(spark, range(100)), SPEC, txn)
    replay = lake.append(_frame(spark, range(100)), SPEC, txn)

    assert first.version == 1 and first.rows == 100
    assert replay.skipped and lake.version("clicks") == 1
    assert lake.read(spark, "clicks").count() == 100
    assert lake.committed_version("clicks", "ingest:query-1") == 0


def test_time_travel_by_version_and_timestamp(spark, tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.append(_frame(spark, range(10)), SPEC, AppTransaction("app", 0))
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)  # Delta commit timestamps have millisecond resolution; keep them apart
    lake.append(_frame(spark, range(10, 25), day="2026-11-21"), SPEC, AppTransaction("app", 1))

    assert lake.read(spark, "clicks").count() == 25
    assert lake.read(spark, "clicks", version=1).count() == 10
    assert lake.read(spark, "clicks", timestamp=between).count() == 10
    days = {r["day"].isoformat() for r in lake.read(spark, "clicks").select("day").distinct().collect()}
    assert days == {"2026-11-20", "2026-11-21"}


def test_tables_are_standard_delta_readable_by_polars(spark, tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.append(_frame(spark, range(50)), SPEC, AppTransaction("app", 0))

    other = pl.read_delta(lake.uri("clicks")).sort("id")
    mine = lake.read(spark, "clicks").orderBy("id").toPandas()

    assert other.height == 50
    assert other["id"].to_list() == mine["id"].tolist()
    assert {d.isoformat() for d in other["day"].to_list()} == {"2026-11-20"}
    assert other["at"].dtype == pl.Datetime("us", "UTC")


def test_overwrite_replaces_the_snapshot_and_keeps_history(spark, tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    lake.append(_frame(spark, range(30)), SPEC)
    lake.overwrite(_frame(spark, range(5)), SPEC)

    assert lake.read(spark, "clicks").count() == 5
    assert lake.read(spark, "clicks", version=1).count() == 30
