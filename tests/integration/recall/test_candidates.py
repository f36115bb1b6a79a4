"""build_candidates end to end: silver, dim_videos and embeddings in a temporary lake -> both recall tables."""

from __future__ import annotations

import datetime as dt
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.lake import Lake
from reelhouse.recall.candidates import build_candidates
from reelhouse.recall.tables import ANY_USER
from reelhouse.silver.tables import DIM_VIDEOS, SILVER_EVENTS
from tests.integration.conftest import build_test_config

pytestmark = pytest.mark.integration

AS_OF = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
PETS = [f"pa{i}" for i in range(5)]
FOOD = [f"fb{i}" for i in range(5)]
_ids = itertools.count()


def ago(**delta) -> dt.datetime:
    return AS_OF - dt.timedelta(**delta)


def silver(user, video, kind, when, watch=None, duration=None):
    return {
        "event_id": f"e{next(_ids)}",
        "event_type": kind,
        "schema_version": 1,
        "user_id": user,
        "video_id": video,
        "event_time": when,
        "session_id": "s",
        "request_id": "",
        "device_os": "ios",
        "device_app_version": "1",
        "device_country": "US",
        "device_network": "wifi",
        "watch_ms": watch,
        "video_duration_ms": duration,
        "position": None,
        "variant": None,
        "received_at": when + dt.timedelta(seconds=1),
        "session_key": f"{user}:0",
        "session_start": when,
        "known_user": True,
        "known_video": True,
        "user_country": "US",
        "user_age_group": None,
        "creator_id": "c",
        "topic": None,
        "upload_time": None,
        "event_date": when.date(),
        "event_hour": when.strftime("%Y-%m-%dT%H"),
    }


def events():
    # Two tastes: a0-a5 play the pets videos, b0-b5 the food videos; user number u skips video
    # u % 5 of their block. Every pets fan but a1 also shares pa1, making it the most popular.
    rows = []
    for block, videos in (("a", PETS), ("b", FOOD)):
        for u in range(6):
            for i, video in enumerate(videos):
                if i != u % 5:
                    rows.append(silver(f"{block}{u}", video, "play", ago(hours=3 + i), 8_000, 10_000))
            if block == "a" and u != 1:
                rows.append(silver(f"a{u}", "pa1", "share", ago(hours=2)))
    rows.append(silver("ghost", "pa0", "play", ago(days=40), 10_000, 10_000))  # outside the lookback
    rows.append(silver("late", "pa0", "like", AS_OF + dt.timedelta(minutes=5)))  # after as_of
    rows.append(silver("shown", "fb0", "impression", ago(hours=1)))  # never engaged
    return rows


@pytest.fixture
def lake_config(spark, tmp_path):
    config = build_test_config(tmp_path)
    vectors = {v: [1.0, 0.1 * i] for i, v in enumerate(PETS)} | {v: [0.1 * i, 1.0] for i, v in enumerate(FOOD)}
    embeddings = tmp_path / "embeddings.parquet"
    pq.write_table(pa.table({"video_id": list(vectors), "embedding": list(vectors.values())}), embeddings)
    recall = config.recall.model_copy(
        update={
            "als_rank": 4,
            "als_max_iter": 5,
            "covisit_neighbours": 4,
            "embeddings_path": str(embeddings),
            "quotas": {"als": 3, "covisit": 3, "topic": 3, "embedding": 3, "popularity": 3},
            "exploration_slots": 1,
        }
    )
    config = config.model_copy(update={"recall": recall})
    lake = Lake(config.lake)
    silver_rows = pa.Table.from_pylist(events(), SILVER_EVENTS.schema)
    lake.write_arrow(spark, silver_rows, SILVER_EVENTS)
    videos = [(v, "pets", ago(days=10)) for v in PETS] + [(v, "food", ago(days=10)) for v in FOOD]
    videos += [("fresh", "pets", ago(hours=2)), ("stale", "pets", ago(days=5))]  # nobody engaged with either
    dims = pa.Table.from_pylist(
        [
            {"video_id": v, "creator_id": "c", "topic": t, "duration_ms": 10_000, "upload_time": u, "updated_at": u}
            for v, t, u in videos
        ],
        DIM_VIDEOS.schema,
    )
    lake.write_arrow(spark, dims, DIM_VIDEOS)
    return config, lake


def test_candidates_and_neighbours_from_silver(spark, lake_config):
    config, lake = lake_config
    result = build_candidates(spark, config, AS_OF)

    rows = lake.to_arrow(config.recall.candidates_table).to_pylist()
    by_user: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["user_id"], r["position"])):
        by_user.setdefault(row["user_id"], []).append(row)
    assert set(by_user) == {f"{b}{u}" for b in "ab" for u in range(6)} | {ANY_USER}
    assert result.users == 12 and result.sources == ["als", "covisit", "topic", "embedding", "popularity"]

    for user, candidates in by_user.items():
        videos = [c["video_id"] for c in candidates]
        assert len(videos) == len(set(videos)), user
        assert [c["position"] for c in candidates] == list(range(len(candidates)))
        assert all(c["as_of"] == AS_OF for c in candidates)
        if user == ANY_USER:
            continue
        block, number = PETS if user[0] == "a" else FOOD, int(user[1:])
        watched = set(block) - {block[number % 5]}
        assert not watched & set(videos), user  # nothing the user already engaged with
        # The one video of their taste they have not seen comes first, from ALS.
        assert (candidates[0]["video_id"], candidates[0]["source"]) == (block[number % 5], "als")
        for source in ("als", "covisit", "topic", "embedding", "popularity"):
            assert sum(c["source"] == source for c in candidates) <= 3
        # Exploration: the only new video, unseen by all; "stale" is too old to count as new.
        explored = [c for c in candidates if c["source"] == "exploration"]
        assert [(c["video_id"], c["score"]) for c in explored] == [("fresh", None)]
        assert "stale" not in videos

    popular = by_user[ANY_USER]
    assert popular[0]["video_id"] == "pa1" and {c["source"] for c in popular} == {"popularity"}
    assert len(popular) == len(PETS) + len(FOOD)  # every engaged video; the list asks for 15
    scores = [c["score"] for c in popular]
    assert scores == sorted(scores, reverse=True)

    neighbours = lake.to_arrow(config.recall.neighbours_table).to_pylist()
    covisit = {r["neighbour_id"] for r in neighbours if r["video_id"] == "pa0" and r["source"] == "covisit"}
    assert covisit == set(PETS) - {"pa0"}  # food videos never share a viewer with pets videos
    by_embedding = sorted(
        (r["rank"], r["neighbour_id"]) for r in neighbours if r["video_id"] == "pa0" and r["source"] == "embedding"
    )
    assert by_embedding[0] == (0, "pa1")
    assert not {r["video_id"] for r in neighbours} & {"fresh", "stale"}  # no vectors, no viewers

    assert result.rows == {config.recall.candidates_table: len(rows), config.recall.neighbours_table: len(neighbours)}
    assert result.candidates["exploration"] == 12


def test_rebuilding_the_same_as_of_gives_the_same_rows(spark, lake_config):
    config, lake = lake_config
    first = build_candidates(spark, config, AS_OF)
    rows = sorted(map(str, lake.to_arrow(config.recall.candidates_table).to_pylist()))
    again = build_candidates(spark, config, AS_OF)
    assert sorted(map(str, lake.to_arrow(config.recall.candidates_table).to_pylist())) == rows
    assert again.versions[config.recall.candidates_table] == first.versions[config.recall.candidates_table] + 1


def test_a_window_without_engagement_leaves_only_what_needs_no_engagement(spark, lake_config):
    config, lake = lake_config
    build_candidates(spark, config, AS_OF)
    much_later = AS_OF + dt.timedelta(days=60)  # every event is older than the lookback
    result = build_candidates(spark, config, much_later)
    assert (result.users, result.pairs) == (0, 0)
    assert lake.to_arrow(config.recall.candidates_table).num_rows == 0  # the earlier build is replaced
    # Embedding neighbours come from the vectors alone; co-visitation needs engagement.
    neighbours = lake.to_arrow(config.recall.neighbours_table).to_pylist()
    assert {r["source"] for r in neighbours} == {"embedding"}
    assert {r["as_of"] for r in neighbours} == {much_later}


def test_as_of_must_carry_a_timezone(spark, lake_config):
    config, _ = lake_config
    with pytest.raises(ReelhouseError, match="timezone"):
        build_candidates(spark, config, dt.datetime(2026, 11, 21, 12))
