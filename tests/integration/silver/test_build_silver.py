"""Silver from hand-made bronze rows, on local Spark and real Delta tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.config import load_config
from reelhouse.events.contract import BRONZE_SCHEMA
from reelhouse.lake import Lake
from reelhouse.silver.build import build_silver, interval_hours
from reelhouse.silver.tables import DIM_VIDEOS, SILVER_EVENTS
from reelhouse.streaming.tables import BRONZE_EVENTS

pytestmark = pytest.mark.integration

H10 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return H10 + dt.timedelta(minutes=minutes)


def bronze_row(event_id, user, video, event_time, received=None, offset=0, event_type="play"):
    return {
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": 1,
        "user_id": user,
        "video_id": video,
        "event_time": event_time,
        "session_id": "s",
        "request_id": "",
        "device_os": "ios",
        "device_app_version": "1.0",
        "device_country": "US",
        "device_network": "wifi",
        "watch_ms": 1000 if event_type == "play" else None,
        "video_duration_ms": 2000 if event_type == "play" else None,
        "position": None,
        "variant": None,
        "kafka_topic": "t",
        "kafka_partition": 0,
        "kafka_offset": offset,
        "kafka_timestamp": received or event_time + dt.timedelta(seconds=1),
        "event_date": event_time.date(),
    }


@pytest.fixture
def setup(tmp_path):
    config = load_config(
        "conf/local.yaml",
        environ={
            "REELHOUSE__LAKE__ROOT": str(tmp_path / "lake"),
            "REELHOUSE__SIMULATOR__CATALOGUE_DIR": str(tmp_path / "catalogue"),
        },
    )
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2"],
                "country": ["US", "DE"],
                "os": ["ios", "android"],
                "app_version": ["1.0", "1.0"],
                "age_group": ["18-24", "25-34"],
                "signup_time": pa.array([H10, H10], pa.timestamp("ms", tz="UTC")),
            }
        ),
        catalogue / "users.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "video_id": ["v1", "v2"],
                "creator_id": ["c1", "c2"],
                "topic": ["pets", "food"],
                "duration_ms": [2000, 3000],
                "upload_time": pa.array([H10, H10], pa.timestamp("ms", tz="UTC")),
                "quality": [0.5, 0.9],
            }
        ),
        catalogue / "videos.parquet",
    )
    return config, Lake(config.lake), catalogue


def add_bronze(spark, lake: Lake, rows) -> None:
    lake.write_arrow(spark, pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA), BRONZE_EVENTS)


def silver_rows(lake: Lake) -> dict[str, dict]:
    return {r["event_id"]: r for r in lake.to_arrow(SILVER_EVENTS.name).to_pylist()}


def test_duplicates_late_data_sessions_and_dimensions(spark, setup):
    config, lake, _ = setup
    add_bronze(
        spark,
        lake,
        [
            bronze_row("e1", "u1", "v1", at(0), offset=1),
            bronze_row("e1", "u1", "v1", at(0), received=at(5), offset=9),  # a client retry: dropped
            bronze_row("e2", "u1", "v1", at(10), offset=2),  # same session (10 min gap)
            bronze_row("e3", "u1", "v2", at(50), offset=3),  # 40 min gap: a new session
            bronze_row("e4", "u9", "v7", at(20), offset=4),  # unknown user and video: kept, flagged
            bronze_row("e5", "u2", "v2", at(30), received=H10 + dt.timedelta(days=2), offset=5),  # too late
            bronze_row("e6", "u2", "v2", at(70), offset=6),  # next hour: another interval
        ],
    )

    result = build_silver(spark, config, H10, at(60))

    rows = silver_rows(lake)
    assert set(rows) == {"e1", "e2", "e3", "e4"}
    assert rows["e1"]["received_at"] == at(0) + dt.timedelta(seconds=1)  # the earliest-received copy
    assert rows["e1"]["session_key"] == rows["e2"]["session_key"] == f"u1:{int(at(0).timestamp() * 1000)}"
    assert rows["e3"]["session_key"] != rows["e1"]["session_key"]
    assert rows["e1"]["topic"] == "pets" and rows["e1"]["user_country"] == "US" and rows["e1"]["known_user"]
    assert not rows["e4"]["known_user"] and not rows["e4"]["known_video"] and rows["e4"]["topic"] is None
    assert (result.too_late, result.duplicates_dropped, result.rows) == (1, 1, 4)


def test_rerunning_an_interval_leaves_the_same_rows(spark, setup):
    config, lake, _ = setup
    add_bronze(spark, lake, [bronze_row(f"e{i}", "u1", "v1", at(i), offset=i) for i in range(30)])
    build_silver(spark, config, H10, at(60))
    first = silver_rows(lake)
    build_silver(spark, config, H10, at(60))
    assert silver_rows(lake) == first and len(first) == 30


def test_a_session_continues_across_intervals(spark, setup):
    config, lake, _ = setup
    add_bronze(spark, lake, [bronze_row("a", "u1", "v1", at(50)), bronze_row("b", "u1", "v1", at(65))])
    build_silver(spark, config, H10, at(60))
    build_silver(spark, config, at(60), at(120))
    rows = silver_rows(lake)
    assert rows["a"]["session_key"] == rows["b"]["session_key"]
    assert rows["b"]["session_start"] == at(50)


def test_dimensions_are_upserted_by_merge(spark, setup):
    config, lake, catalogue = setup
    add_bronze(spark, lake, [bronze_row("e1", "u1", "v1", at(1))])
    build_silver(spark, config, H10, at(60))
    videos = pq.read_table(catalogue / "videos.parquet").to_pylist()
    videos[0]["topic"] = "comedy"  # v1 changes topic
    videos.append({**videos[1], "video_id": "v3"})  # a new upload
    pq.write_table(pa.Table.from_pylist(videos), catalogue / "videos.parquet")

    result = build_silver(spark, config, H10, at(60))

    assert result.dimensions["dim_videos"] == {"num_target_rows_inserted": 1, "num_target_rows_updated": 1}
    dims = {r["video_id"]: r for r in lake.to_arrow(DIM_VIDEOS.name).to_pylist()}
    assert dims["v1"]["topic"] == "comedy" and set(dims) == {"v1", "v2", "v3"}
    assert result.dimensions["dim_users"] == {"num_target_rows_inserted": 0, "num_target_rows_updated": 0}


def test_intervals_must_be_whole_utc_hours():
    assert interval_hours(H10, at(120)) == ["2026-11-21T10", "2026-11-21T11"]
    with pytest.raises(Exception, match="whole hour"):
        interval_hours(at(5), at(60))
    with pytest.raises(Exception, match="empty"):
        interval_hours(H10, H10)


def test_gold_features_from_silver_as_of_the_interval_end(spark, setup):
    # Silver then gold for 10:00-11:00: v1 had two plays (one complete) and one like there.
    from reelhouse.features.gold import build_features, feature_table

    config, lake, _ = setup
    add_bronze(
        spark,
        lake,
        [
            bronze_row("p1", "u1", "v1", at(5)),
            bronze_row("p2", "u2", "v1", at(15)) | {"watch_ms": 2000},
            bronze_row("l1", "u2", "v1", at(16), event_type="like"),
            bronze_row("x1", "u1", "v1", at(61)),  # after the feature time: not counted
        ],
    )
    build_silver(spark, config, H10, at(120))

    first = build_features(spark, config, at(60))
    again = build_features(spark, config, at(60))

    videos = {r["video_id"]: r for r in lake.to_arrow(feature_table("video").name).to_pylist()}
    v1 = videos["v1"]
    assert v1["video_plays_1h"] == 2 and v1["video_completion_rate_1h"] == pytest.approx(0.5)
    assert v1["video_mean_watch_ratio_1h"] == pytest.approx(0.75)
    assert v1["feature_time"] == at(60)
    topics = lake.to_arrow(feature_table("user_topic").name).to_pylist()
    assert {(r["user_id"], r["topic"]) for r in topics} == {("u1", "pets"), ("u2", "pets")}
    assert first.rows == again.rows and lake.to_arrow(feature_table("video").name).num_rows == 1
