"""The real-time Delta tables get every spooled micro-batch exactly once, across crashes."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pyarrow as pa
import pytest

from reelhouse.config import LakeConfig
from reelhouse.features.gold import realtime_feature_table
from reelhouse.lake import AppTransaction, Lake
from reelhouse.speed.realtime import RealtimeDeltaWriter

pytestmark = pytest.mark.integration

ENTITIES = ("video", "user")
APP_ID = "stream_features:test-query"


def batch_rows(batch_id: int, keys: int = 3) -> dict[str, pa.Table]:
    now = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
    tables = {}
    for entity in ENTITIES:
        spec = realtime_feature_table(entity)
        key = spec.schema.names[0]
        rows = [
            {key: f"{entity}-{batch_id}-{i}", "feature_time": now, "feature_hour": "2026-12-05T12",
             "computed_at": now, "batch_id": batch_id}
            for i in range(keys)
        ]  # fmt: skip
        tables[entity] = pa.Table.from_pylist(rows, schema=spec.schema)
    return tables


def rows_per_batch(lake: Lake, entity: str) -> Counter:
    table = lake.to_arrow(realtime_feature_table(entity).name, columns=["batch_id"])
    return Counter(table.column("batch_id").to_pylist())


def writer(spark, lake: Lake, checkpoint: str) -> RealtimeDeltaWriter:
    return RealtimeDeltaWriter(spark, lake, checkpoint, ENTITIES, lambda: APP_ID)


def test_spooled_batches_reach_every_table_once_even_when_one_table_was_already_ahead(spark, tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    checkpoint = str(tmp_path / "checkpoint")
    first = writer(spark, lake, checkpoint)
    first.start()
    first.put(0, batch_rows(0))
    first.close()  # flushes batch 0 to both tables
    assert not first.pending()

    # A run that died after spooling batches 1 and 2 and committing them to the video table only.
    crashed = writer(spark, lake, checkpoint)
    crashed.put(1, batch_rows(1))
    crashed.put(2, batch_rows(2))
    video = realtime_feature_table("video")
    both = pa.concat_tables([batch_rows(1)["video"], batch_rows(2)["video"]])
    lake.write_arrow(spark, both, video, txn=AppTransaction(APP_ID, 2))
    # ...and a stale partial file from a batch that died mid-spool (Spark replays that batch).
    (tmp_path / "checkpoint" / "realtime_spool" / "000000000003.video.parquet.partial").write_bytes(b"half")

    restarted = writer(spark, lake, checkpoint)
    restarted.start()  # appends what the crashed run left
    restarted.put(3, batch_rows(3))
    restarted.close()

    for entity in ENTITIES:
        assert rows_per_batch(lake, entity) == {0: 3, 1: 3, 2: 3, 3: 3}, entity
    assert not restarted.pending()


def test_a_failed_append_keeps_the_rows_spooled_and_fails_the_next_batch(spark, tmp_path, monkeypatch):
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    checkpoint = str(tmp_path / "checkpoint")
    failing = writer(spark, lake, checkpoint)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(lake, "write_arrow", broken)
    failing.start()
    failing.put(0, batch_rows(0))
    failing._thread.join(60)  # the thread stops at its first failure
    with pytest.raises(RuntimeError, match="rows stay spooled"):
        failing.put(1, batch_rows(1))
    assert set(failing.pending()) == {0}

    monkeypatch.undo()
    recovered = writer(spark, lake, checkpoint)
    recovered.start()
    recovered.close()
    assert rows_per_batch(lake, "user") == {0: 3}
