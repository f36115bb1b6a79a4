"""Gold feature rows into the online store, from hand-made gold tables, on local Spark.

Feature times are recent whole hours (not fixed dates), so rows stored with the default TTL,
counted from their feature time, are still live when read back on either store.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from reelhouse.cli import build_parser
from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.features.gold import feature_table
from reelhouse.features.registry import ENTITY_KEYS, feature_names
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.online import FeatureRow, open_online_store
from reelhouse.online.materialize import materialize_online
from reelhouse.online.store import feature_version

pytestmark = pytest.mark.integration

NOW_HOUR = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
T1 = NOW_HOUR - dt.timedelta(hours=2)  # the older feature time
T2 = NOW_HOUR - dt.timedelta(hours=1)  # the latest

# Keys per entity and feature time: "old" exists only at T1; the others at both.
KEYS: dict[str, dict[dt.datetime, list[tuple[str, ...]]]] = {
    "video": {T1: [("v1",), ("v2",), ("old",)], T2: [("v1",), ("v2",), ("v3",)]},
    "user": {T1: [("u1",), ("old",)], T2: [("u1",), ("u2",)]},
    "user_topic": {T1: [("u1", "pets"), ("old", "food")], T2: [("u1", "pets"), ("u1", "food"), ("u2", "pets")]},
}


def gold_rows(entity: str, at: dt.datetime, keys: list[tuple[str, ...]]) -> list[dict]:
    """One gold row per key; every value depends on the feature time, so a row shows which hour it is.

    The first key's first float feature is NaN and its second is null: both must arrive as None.
    """
    spec = feature_table(entity)
    stamp = int(at.timestamp()) // 3600 % 1000
    rows = []
    for i, key in enumerate(keys):
        row: dict = dict(zip(ENTITY_KEYS[entity], key, strict=True))
        floats = 0
        for j, name in enumerate(feature_names(entity)):
            if pa.types.is_integer(spec.schema.field(name).type):
                row[name] = stamp * 100 + i * 10 + j
            else:
                floats += 1
                value = stamp + i / 8 + j / 64
                row[name] = math.nan if (i, floats) == (0, 1) else None if (i, floats) == (0, 2) else value
        row["feature_time"] = at
        row["feature_hour"] = at.strftime("%Y-%m-%dT%H")
        rows.append(row)
    return rows


def write_gold(spark, config: ReelhouseConfig, entity: str, rows: list[dict]) -> None:
    spec = feature_table(entity)
    Lake(config.lake).write_arrow(spark, pa.Table.from_pylist(rows, schema=spec.schema), spec)


def key_of(entity: str, row: dict) -> str:
    return "|".join(row[k] for k in ENTITY_KEYS[entity])


def expected(entity: str, rows: list[dict]) -> dict[str, dict]:
    """Online values of gold rows: the feature columns only, NaN as None."""
    return {
        key_of(entity, row): {
            n: None if isinstance(row[n], float) and math.isnan(row[n]) else row[n] for n in feature_names(entity)
        }
        for row in rows
    }


def read_view(config: ReelhouseConfig, entity: str, keys: list[str]) -> dict[str, FeatureRow | None]:
    store = open_online_store(config.online_store)
    try:
        return store.read(features_view(entity), keys)
    finally:
        store.close()


@pytest.fixture
def config(base_config: ReelhouseConfig, tmp_path: Path) -> ReelhouseConfig:
    """A fresh lake and SQLite online store; no broker (materialisation needs none)."""
    return base_config.model_copy(
        update={
            "lake": base_config.lake.model_copy(update={"root": str(tmp_path / "lake")}),
            "online_store": base_config.online_store.model_copy(
                update={"type": "sqlite", "path": tmp_path / "online.db"}
            ),
        }
    )


@pytest.fixture
def gold(spark, config: ReelhouseConfig) -> dict[str, dict[dt.datetime, list[dict]]]:
    """Every entity's gold table with two feature times, T1 committed before T2."""
    made: dict[str, dict[dt.datetime, list[dict]]] = {}
    for entity, by_time in KEYS.items():
        made[entity] = {}
        for at in (T1, T2):
            made[entity][at] = gold_rows(entity, at, by_time[at])
            write_gold(spark, config, entity, made[entity][at])
    return made


def test_the_latest_feature_time_of_every_entity_is_loaded(spark, config, gold):
    result = materialize_online(spark, config)

    lake = Lake(config.lake)
    assert set(result.views) == {"video_features", "user_features", "user_topic_features"}
    for entity in KEYS:
        load = result.views[features_view(entity)]
        assert load.feature_time == T2.isoformat()
        assert load.delta_version == lake.version(feature_table(entity).name)
        assert load.rows == load.changed == len(gold[entity][T2])
        want = expected(entity, gold[entity][T2])
        got = read_view(config, entity, [*want, "old", "old|food"])
        for key, values in want.items():
            row = got[key]
            assert row is not None, key
            assert dict(row.values) == values
            assert row.feature_time == T2
            assert row.version == feature_version(T2)
            assert row.expires_at == T2 + dt.timedelta(seconds=config.online_store.ttl_s)
        assert got["old"] is None and got["old|food"] is None  # only at T1: not loaded
    topics = read_view(config, "user_topic", ["u1|pets", "u1|food", "u2|pets"])
    assert all(topics.values())  # multi-column keys are joined with "|"
    first = read_view(config, "video", ["v1"])["v1"]
    assert first is not None
    nulls = [n for n in feature_names("video") if first.values[n] is None]
    assert len(nulls) == 2  # the NaN and the null float


def test_a_backfill_keeps_newer_rows_and_a_rerun_changes_nothing(spark, config, gold):
    materialize_online(spark, config)

    backfill = materialize_online(spark, config, feature_time=T1, entities=["video", "user_topic"])
    assert set(backfill.views) == {"video_features", "user_topic_features"}
    assert backfill.views["video_features"].feature_time == T1.isoformat()
    assert backfill.views["video_features"].rows == 3
    assert backfill.views["video_features"].changed == 1  # only "old": v1 and v2 hold T2 rows
    assert backfill.views["user_topic_features"].changed == 1  # only "old|food"
    video = read_view(config, "video", ["v1", "v2", "old"])
    want_t2 = expected("video", gold["video"][T2])
    assert {k: dict(video[k].values) for k in ("v1", "v2")} == {k: want_t2[k] for k in ("v1", "v2")}
    assert dict(video["old"].values) == expected("video", gold["video"][T1])["old"]
    assert video["old"].feature_time == T1

    again = materialize_online(spark, config)
    assert all(load.changed == 0 and load.rows > 0 for load in again.views.values())
    assert read_view(config, "video", ["v1", "v2"]) == {k: video[k] for k in ("v1", "v2")}


def test_the_batch_row_replaces_the_speed_rows_of_its_feature_time(spark, config, gold):
    later = T2 + dt.timedelta(hours=1)
    speed_rows = [
        FeatureRow("v1", {"video_plays_1h": -1}, T2, feature_version(T2, seq=5)),  # same hour: batch wins
        FeatureRow("v2", {"video_plays_1h": -2}, later, feature_version(later, seq=1)),  # a newer hour: kept
    ]
    store = open_online_store(config.online_store)
    try:
        store.write(features_view("video"), speed_rows)
    finally:
        store.close()

    result = materialize_online(spark, config, entities=["video"])

    assert result.views["video_features"].changed == 2  # v1 replaced, v3 created; v2 kept
    got = read_view(config, "video", ["v1", "v2"])
    assert dict(got["v1"].values) == expected("video", gold["video"][T2])["v1"]
    assert got["v1"].version == feature_version(T2) > feature_version(T2, seq=5)
    assert got["v2"].values == {"video_plays_1h": -2} and got["v2"].feature_time == later


@pytest.fixture
def driver_collections(spark) -> Iterator[list[tuple[list[str], int]]]:
    """Every frame the driver collects during the test (columns, row count); pandas/Arrow/iterator
    pulls of rows raise. The executors' writes cannot be observed from here, so this watches the
    driver's side: it may only ever hold the counts."""
    frame_class = type(spark.range(1))
    collect = frame_class.collect
    seen: list[tuple[list[str], int]] = []

    def recording_collect(self):  # noqa: ANN001, ANN202 - stands in for DataFrame.collect
        rows = collect(self)
        seen.append((self.columns, len(rows)))
        return rows

    def refuse(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("materialisation pulled rows to the driver")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_class, "collect", recording_collect)
        for name in ("toPandas", "toArrow", "toLocalIterator"):
            patch.setattr(frame_class, name, refuse)
        yield seen


def test_executors_write_in_chunks_and_the_driver_only_sums_counts(spark, config, driver_collections):
    config = config.model_copy(
        update={
            "lake": config.lake.model_copy(update={"target_file_rows": 100}),  # several files: several tasks
            "online_store": config.online_store.model_copy(update={"materialize_chunk_rows": 50}),
        }
    )
    rows = gold_rows("video", T2, [(f"v{i:03d}",) for i in range(300)])
    write_gold(spark, config, "video", rows)
    driver_collections.clear()  # the write's own bookkeeping (its commit's metrics) is not under test

    load = materialize_online(spark, config, entities=["video"]).views["video_features"]

    assert load.rows == load.changed == 300
    assert load.chunks >= 300 // 50  # no chunk holds more than 50 rows
    assert 1 <= load.tasks <= int(spark.conf.get("spark.sql.shuffle.partitions"))
    # The feature hours come from the Delta log's partition values; of the data, only the sums.
    assert driver_collections == [(["values"], 1), (["tasks", "rows", "changed", "chunks"], 1)]
    want = expected("video", rows)
    got = read_view(config, "video", list(want))
    assert {k: dict(r.values) for k, r in got.items() if r is not None} == want


def test_redis_store_receives_the_same_rows(spark, config, gold, redis_url, redis_client):
    config = config.model_copy(
        update={
            "online_store": config.online_store.model_copy(
                update={"type": "redis", "redis_url": redis_url, "key_prefix": "materialize:"}
            )
        }
    )
    result = materialize_online(spark, config, entities=["video", "user_topic"])

    for entity in ("video", "user_topic"):
        want = expected(entity, gold[entity][T2])
        got = read_view(config, entity, list(want))
        assert {k: dict(r.values) for k, r in got.items() if r is not None} == want
        assert {r.version for r in got.values() if r is not None} == {feature_version(T2)}
        assert result.views[features_view(entity)].changed == len(want)
    assert redis_client.exists("materialize:user_topic_features:u1|pets")
    again = materialize_online(spark, config, entities=["video", "user_topic"])
    assert all(load.changed == 0 for load in again.views.values())


def test_bad_requests_fail_before_anything_is_written(spark, config, gold):
    with pytest.raises(ReelhouseError, match="no feature_hour"):
        materialize_online(spark, config, feature_time=T2 + dt.timedelta(hours=5))
    with pytest.raises(ReelhouseError, match="whole hour"):
        materialize_online(spark, config, feature_time=T2.replace(tzinfo=None))
    with pytest.raises(ReelhouseError, match="unknown entities"):
        materialize_online(spark, config, entities=["creator"])
    assert read_view(config, "video", ["v1"]) == {"v1": None}


def test_an_empty_lake_says_which_job_to_run(spark, config):
    with pytest.raises(ReelhouseError, match="does not exist"):
        materialize_online(spark, config, entities=["video"])


def test_cli_parses_the_materialize_subcommand():
    args = build_parser().parse_args(
        ["materialize", "--feature-time", "2026-11-22T00:00:00+00:00", "--entities", "video,user"]
    )
    assert args.feature_time == dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    assert args.entities == "video,user"
