"""Training sets from hand-made silver and gold rows, on local Spark and real Delta tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from reelhouse.features.gold import feature_table
from reelhouse.features.registry import feature_names
from reelhouse.lake import Lake, TableSpec
from reelhouse.silver.tables import SILVER_EVENTS
from reelhouse.training.columns import FEATURE_TIME_COLUMNS, SPLITS
from reelhouse.training.dataset import ENTITIES, attributed_impressions, build_training_set, training_set_lineage
from tests.integration.conftest import build_test_config

pytestmark = pytest.mark.integration

H10 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return H10 + dt.timedelta(minutes=minutes)


def event(
    event_id,
    event_type,
    request_id,
    user,
    video,
    time,
    watch_ms=None,
    duration_ms=None,
    received=None,
    topic="pets",
    position=None,
):
    return {
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": 1,
        "user_id": user,
        "video_id": video,
        "event_time": time,
        "session_id": "s1",
        "request_id": request_id,
        "device_os": "ios",
        "device_app_version": "1.0",
        "device_country": "US",
        "device_network": "wifi",
        "watch_ms": watch_ms,
        "video_duration_ms": duration_ms,
        "position": position,
        "variant": None,
        "received_at": received or time + dt.timedelta(seconds=1),
        "session_key": "u:0",
        "session_start": time,
        "known_user": True,
        "known_video": True,
        "user_country": "US",
        "user_age_group": "18-24",
        "creator_id": "c1",
        "topic": topic,
        "upload_time": None,
        "event_date": time.date(),
        "event_hour": time.strftime("%Y-%m-%dT%H"),
    }


def impression(event_id, request_id, user, video, time, **kwargs):
    return event(event_id, "impression", request_id, user, video, time, position=3, **kwargs)


def play(event_id, request_id, user, video, time, watch_ms, duration_ms=10_000):
    return event(event_id, "play", request_id, user, video, time, watch_ms, duration_ms)


def gold(entity: str, keys: dict, feature_time: dt.datetime, **features) -> dict:
    row = dict.fromkeys(feature_names(entity)) | keys | features
    return row | {"feature_time": feature_time, "feature_hour": feature_time.strftime("%Y-%m-%dT%H")}


def add(spark, lake: Lake, spec: TableSpec, rows: list[dict]) -> None:
    lake.ensure_table(spark, spec)
    if rows:
        lake.write_arrow(spark, pa.Table.from_pylist(rows, schema=spec.schema), spec)


@pytest.fixture
def config(tmp_path):
    return build_test_config(tmp_path)


@pytest.fixture
def lake(spark, config):
    lake = Lake(config.lake)
    for entity in ENTITIES:  # empty feature tables unless a test adds rows
        lake.ensure_table(spark, feature_table(entity))
    return lake


def built_rows(lake: Lake, config) -> dict[str, dict]:
    rows = lake.to_arrow(config.training.table).to_pylist()
    by_request = {r["request_id"]: r for r in rows}
    assert len(by_request) == len(rows)
    return by_request


def test_features_come_from_the_latest_feature_time_at_or_before_the_impression(spark, config, lake):
    video, user, user_topic = (feature_table(e) for e in ENTITIES)
    add(
        spark,
        lake,
        video,
        [
            gold("video", {"video_id": "v2"}, at(-120), video_impressions_1h=7),  # v2 was last active before 10:00
            gold("video", {"video_id": "v1"}, at(0), video_impressions_1h=1),
            # Computed at 12:00, after most impressions: its distinctive 999 must not reach them.
            gold("video", {"video_id": "v1"}, at(120), video_impressions_1h=999),
        ],
    )
    add(
        spark,
        lake,
        user,
        [
            gold("user", {"user_id": "u1"}, at(0), user_events_1d=5),
            gold("user", {"user_id": "u1"}, at(120), user_events_1d=999),
        ],
    )
    add(
        spark,
        lake,
        user_topic,
        [
            gold("user_topic", {"user_id": "u1", "topic": "pets"}, at(0), user_topic_plays_7d=3),
            gold("user_topic", {"user_id": "u1", "topic": "pets"}, at(120), user_topic_plays_7d=999),
        ],
    )
    add(
        spark,
        lake,
        SILVER_EVENTS,
        [
            impression("a", "r-between", "u1", "v1", at(90)),  # 11:30: the 10:00 rows, never the 12:00 ones
            impression("b", "r-before-any", "u1", "v1", at(-30)),  # 09:30: no feature row existed yet
            impression("c", "r-at-12", "u1", "v1", at(120)),  # 12:00 rows cover events before 12:00: usable
            # Device clock 40 min ahead: known when received (11:50), so 12:00 is still the future.
            impression("d", "r-clock-ahead", "u1", "v1", at(150), received=at(110)),
            # v2's last row is from 08:00; the 10:00 build found no activity, so nothing is known now.
            impression("e", "r-stale", "u1", "v2", at(90)),
        ],
    )

    build_training_set(spark, config, at(-60), at(180))

    rows = built_rows(lake, config)
    between = rows["r-between"]
    assert (between["video_impressions_1h"], between["user_events_1d"], between["user_topic_plays_7d"]) == (1, 5, 3)
    assert between["video_feature_time"] == between["user_feature_time"] == between["user_topic_feature_time"] == at(0)

    before = rows["r-before-any"]
    assert all(before[c] is None for c in (*FEATURE_TIME_COLUMNS, *feature_names("video"), *feature_names("user")))

    assert rows["r-at-12"]["video_impressions_1h"] == 999 and rows["r-at-12"]["video_feature_time"] == at(120)
    assert rows["r-clock-ahead"]["video_impressions_1h"] == 1
    assert rows["r-stale"]["video_impressions_1h"] is None and rows["r-stale"]["video_feature_time"] is None
    assert rows["r-stale"]["user_events_1d"] == 5

    for request, row in rows.items():
        for column in FEATURE_TIME_COLUMNS:
            assert row[column] is None or row[column] <= row["impression_time"]
        if request != "r-at-12":  # every other impression was known before 12:00
            assert 999 not in (row["video_impressions_1h"], row["user_events_1d"], row["user_topic_plays_7d"])


def test_labels_come_from_the_outcomes_of_the_same_request_within_the_window(spark, config, lake):
    # Defaults: attribution window 30 min, positive watch ratio 0.5.
    assert (config.training.attribution_window_s, config.training.positive_watch_ratio) == (1_800, 0.5)
    add(
        spark,
        lake,
        SILVER_EVENTS,
        [
            impression("i1", "r1", "u1", "v1", at(0)),
            play("p1", "r1", "u1", "v1", at(1), 4_000),
            event("l1", "like", "r1", "u1", "v1", at(5)),
            event("c1", "comment", "r1", "u1", "v1", at(6)),
            event("f1", "follow", "r1", "u1", "v1", at(7)),
            # r2: watched 60%; a full play a minute before the impression is not its outcome.
            impression("i2", "r2", "u1", "v2", at(0)),
            play("p2", "r2", "u1", "v2", at(1), 6_000),
            play("p2-early", "r2", "u1", "v2", at(-1), 10_000),
            # r3: watched 40%; its like came 31 min later (outside the window), and a share of the
            # same user and video belongs to another request.
            impression("i3", "r3", "u1", "v3", at(0)),
            play("p3", "r3", "u1", "v3", at(1), 4_000),
            event("l3", "like", "r3", "u1", "v3", at(31)),
            event("s3", "share", "r-other", "u1", "v3", at(2)),
            # r4: watched three times the duration (replays): capped at 1, and complete.
            impression("i4", "r4", "u1", "v4", at(0)),
            play("p4", "r4", "u1", "v4", at(1), 30_000),
            # r5: a 96% play exactly at the end of the window still counts.
            impression("i5", "r5", "u1", "v5", at(0)),
            play("p5", "r5", "u1", "v5", at(30), 9_600),
            # r6: skipped.
            impression("i6", "r6", "u1", "v6", at(0)),
            event("k6", "skip", "r6", "u1", "v6", at(0.1), 500, 10_000),
            # r7: shown twice in the same request; the first impression (10:10) is kept.
            impression("i7a", "r7", "u1", "v7", at(10)),
            impression("i7b", "r7", "u1", "v7", at(12)),
            event("s7", "share", "r7", "u1", "v7", at(13)),
            # An impression without a request id cannot be attributed.
            impression("i8", "", "u1", "v8", at(20)),
            play("p8", "", "u1", "v8", at(21), 10_000),
            # r9: exactly the positive watch ratio.
            impression("i9", "r9", "u1", "v9", at(0)),
            play("p9", "r9", "u1", "v9", at(2), 5_000),
        ],
    )

    conf = "spark.sql.requireAllClusterKeysForCoPartition"
    before = spark.conf.get(conf, None)
    result = build_training_set(spark, config, H10, at(60))
    assert spark.conf.get(conf, None) == before  # the build's own setting does not leak into the session

    rows = built_rows(lake, config)
    assert set(rows) == {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r9"}
    assert (result.skipped_no_request_id, result.skipped_duplicates) == (1, 1)
    outcome = ("label", "played", "completed", "liked", "shared", "commented", "followed", "skipped")

    def labels(request):
        return tuple(rows[request][c] for c in outcome), rows[request]["watch_ratio"]

    assert labels("r1") == ((1, 1, 0, 1, 0, 1, 1, 0), pytest.approx(0.4))  # positive by the like
    assert labels("r2") == ((1, 1, 0, 0, 0, 0, 0, 0), pytest.approx(0.6))
    assert labels("r3") == ((0, 1, 0, 0, 0, 0, 0, 0), pytest.approx(0.4))
    assert labels("r4") == ((1, 1, 1, 0, 0, 0, 0, 0), 1.0)
    assert labels("r5") == ((1, 1, 1, 0, 0, 0, 0, 0), pytest.approx(0.96))
    assert labels("r6") == ((0, 0, 0, 0, 0, 0, 0, 1), 0.0)
    assert labels("r7") == ((1, 0, 0, 0, 1, 0, 0, 0), 0.0)  # positive by the share
    assert labels("r9")[0][0] == 1
    assert rows["r7"]["impression_time"] == at(10)
    assert (rows["r1"]["position"], rows["r1"]["hour_of_day"], rows["r1"]["device_os"]) == (3, 10, "ios")
    assert (rows["r1"]["topic"], rows["r1"]["user_country"], rows["r1"]["user_age_group"]) == ("pets", "US", "18-24")

    # The transform alone, shuffled as Spark chooses (the build partitions by user): same labels.
    silver = lake.read(spark, SILVER_EVENTS.name)
    alone = {r["request_id"]: r for r in attributed_impressions(silver, H10, at(60), 1_800, 0.5).collect()}
    assert {k: (r["label"], r["watch_ratio"]) for k, r in alone.items()} == {
        k: (r["label"], r["watch_ratio"]) for k, r in rows.items()
    }


def test_split_by_time_lineage_and_rebuild(spark, config, lake):
    # 100 impressions a minute apart, plus 5 more sharing one timestamp near the test cut.
    rows = [impression(f"i{m}", f"r{m}", f"u{m % 7}", f"v{m % 11}", at(m)) for m in range(100)]
    rows += [impression(f"t{k}", f"rt{k}", "u1", f"vt{k}", at(89.5)) for k in range(5)]
    add(spark, lake, SILVER_EVENTS, rows)
    add(spark, lake, feature_table("video"), [gold("video", {"video_id": "v1"}, H10, video_impressions_1h=1)])

    first = build_training_set(spark, config, H10, at(120))

    built = built_rows(lake, config)
    assert len(built) == 105 and sum(first.rows.values()) == 105
    by_split = {s: [r["impression_time"] for r in built.values() if r["split"] == s] for s in SPLITS}
    assert {s: len(times) for s, times in by_split.items()} == first.rows
    assert max(by_split["train"]) < min(by_split["valid"]) and max(by_split["valid"]) < min(by_split["test"])
    assert 5 <= first.rows["test"] <= 20 and 5 <= first.rows["valid"] <= 20
    assert len({built[f"rt{k}"]["split"] for k in range(5)}) == 1  # one timestamp, one side of the cut

    versions = {SILVER_EVENTS.name: lake.version(SILVER_EVENTS.name)}
    versions |= {feature_table(e).name: lake.version(feature_table(e).name) for e in ENTITIES}
    assert first.input_versions == versions
    assert first.version == lake.version(config.training.table)
    assert training_set_lineage(lake, config.training.table) == {config.training.table: first.version, **versions}

    # New silver data outside the interval: the rebuild has the same rows and a new silver version.
    add(spark, lake, SILVER_EVENTS, [impression("late", "r-late", "u1", "v1", at(200))])
    second = build_training_set(spark, config, H10, at(120))

    assert built_rows(lake, config) == built
    assert second.rows == first.rows and second.version == first.version + 1
    assert training_set_lineage(lake, config.training.table)[SILVER_EVENTS.name] == versions[SILVER_EVENTS.name] + 1


def test_an_interval_without_impressions_is_an_error(spark, config, lake):
    add(spark, lake, SILVER_EVENTS, [impression("i1", "r1", "u1", "v1", at(0))])
    with pytest.raises(Exception, match="no impressions"):
        build_training_set(spark, config, at(60), at(120))
