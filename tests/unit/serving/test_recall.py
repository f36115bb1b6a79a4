"""The in-memory recall index on tiny Arrow tables: lookups, blending, top-up, seen, realtime, sources."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from reelhouse.recall.tables import ANY_USER, CANDIDATES_SCHEMA, NEIGHBOURS_SCHEMA
from reelhouse.serving.recall import EXPLORATION, REALTIME, TRENDING, IdVocabulary, build_recall_index

NOW = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)


def candidates(rows: list[tuple[str, str, str, float | None]]) -> pa.Table:
    """(user, video, source, score) in blend order per user."""
    position: dict[str, int] = {}
    out = []
    for user, video, source, score in rows:
        p = position[user] = position.get(user, -1) + 1
        out.append(
            {
                "user_id": user,
                "video_id": video,
                "source": source,
                "source_rank": p,
                "score": score,
                "position": p,
                "as_of": NOW,
            }
        )
    return pa.Table.from_pylist(out, schema=CANDIDATES_SCHEMA)


def neighbours(pairs: dict[str, list[str]]) -> pa.Table:
    rows = [
        {"video_id": v, "neighbour_id": n, "source": "covisit", "rank": r, "score": 1.0 / (r + 1), "as_of": NOW}
        for v, near in pairs.items()
        for r, n in enumerate(near)
    ]
    return pa.Table.from_pylist(rows, schema=NEIGHBOURS_SCHEMA)


def videos(rows: list[tuple[str, str | None, str | None, dt.datetime | None]]) -> pa.Table:
    return pa.table(
        {
            "video_id": [r[0] for r in rows],
            "creator_id": [r[1] for r in rows],
            "topic": [r[2] for r in rows],
            "upload_time": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture
def index():
    table = candidates(
        [
            ("u1", "a", "als", 0.9),
            ("u1", "b", "covisit", 0.8),
            ("u1", "c", "als", 0.7),
            ("u1", "n1", "exploration", None),
            ("u2", "c", "topic", 0.5),
            (ANY_USER, "t1", "popularity", 30.0),
            (ANY_USER, "a", "popularity", 20.0),
            (ANY_USER, "t2", "popularity", 10.0),
        ]
    )
    dims = videos(
        [
            ("a", "c1", "pets", NOW - dt.timedelta(days=9)),
            ("b", "c1", "cars", NOW - dt.timedelta(days=9)),
            ("c", "c2", "pets", None),
            ("t1", "c3", "food", NOW - dt.timedelta(days=3)),
            ("t2", "c3", None, NOW - dt.timedelta(days=3)),
            ("n1", "c4", "pets", NOW - dt.timedelta(hours=2)),
            ("n2", "c5", "cars", NOW - dt.timedelta(hours=30)),
            ("x", "c6", "food", NOW - dt.timedelta(days=3)),
            ("y", "c6", "food", NOW - dt.timedelta(days=3)),
        ]
    )
    users = pa.table({"user_id": ["u1", "u3"], "country": ["US", None], "age_group": ["18-24", "25-34"]})
    return build_recall_index(
        table, neighbours({"a": ["x", "y"], "b": ["y", "b2"]}), dims, users, {"user_candidates": 4}
    )


def ids(index, found) -> list[str]:
    return index.videos.ids(found.video)


def sources(index, found) -> list[str]:
    return [index.source_names[s] for s in found.source]


def test_vocabulary_codes_round_trip_and_unknown_ids():
    vocabulary = IdVocabulary.from_arrow([pa.array(["v3", "v1", None]), pa.chunked_array([["v2", "v1"]])])
    assert len(vocabulary) == 3
    codes = vocabulary.codes(["v2", "nope", "v3"])
    assert codes.tolist()[1] == -1 and vocabulary.ids(codes[[0, 2]]) == ["v2", "v3"]
    assert vocabulary.code("v1") >= 0 and vocabulary.code("") == -1
    assert IdVocabulary.from_arrow([]).code("v1") == -1


def test_a_known_user_gets_their_blend_in_order_then_trending(index):
    found = index.recall(index.user_code("u1"), n=10, now_s=NOW.timestamp())
    # The user's list in blend order (keeping its sources), then trending without repeats ('a' is in both).
    assert ids(index, found) == ["a", "b", "c", "n1", "t1", "t2"]
    assert sources(index, found) == ["als", "covisit", "als", EXPLORATION, TRENDING, TRENDING]
    assert found.personal == 4
    assert found.score[0] == pytest.approx(0.9) and np.isnan(found.score[3])


def test_a_short_list_is_topped_up_with_trending_and_cut_at_n(index):
    found = index.recall(index.user_code("u2"), n=3, now_s=NOW.timestamp())
    assert ids(index, found) == ["c", "t1", "a"]


def test_an_unknown_user_gets_trending_and_new_videos(index):
    assert index.user_code("stranger") == -1
    rng = np.random.default_rng(1)
    found = index.recall(-1, n=10, explore=2, new_video_hours=48, now_s=NOW.timestamp(), rng=rng)
    # Exploration draws from videos uploaded in the last 48 h (n1, n2) come first, then trending.
    assert sorted(ids(index, found)[:2]) == ["n1", "n2"]
    assert sources(index, found)[:2] == [EXPLORATION, EXPLORATION]
    assert ids(index, found)[2:] == ["t1", "a", "t2"]
    assert found.personal == 0


def test_a_user_in_dim_users_without_candidates_is_a_cold_start(index):
    code = index.user_code("u3")
    assert code >= 0 and index.user_attributes(code) == (None, "25-34")
    assert ids(index, index.recall(code, n=5, now_s=NOW.timestamp())) == ["t1", "a", "t2"]
    assert index.user_attributes(index.user_code("u1")) == ("US", "18-24")
    assert index.user_attributes(-1) == (None, None)


def test_seen_videos_are_removed_everywhere(index):
    seen = index.videos.codes(["a", "t1", "n1"])
    found = index.recall(index.user_code("u1"), n=10, seen=seen, now_s=NOW.timestamp())
    assert ids(index, found) == ["b", "c", "t2"]


def test_realtime_recall_round_robins_the_neighbours_of_recent_engagement(index):
    recent = index.videos.codes(["b", "a"])  # most recent first
    found = index.recall(-1, n=10, recent=recent, now_s=NOW.timestamp())
    # Rank 0 of each seed (b's y, a's x), then rank 1 (b's b2; a's y is a repeat), then trending.
    assert ids(index, found)[:3] == ["y", "x", "b2"]
    assert sources(index, found)[:3] == [REALTIME] * 3
    assert found.personal == 3
    assert index.recall(-1, n=10, recent=recent, realtime_limit=1, now_s=NOW.timestamp()).video.size == 4


def test_a_variant_restricted_to_sources_keeps_only_those(index):
    found = index.recall(index.user_code("u1"), n=10, sources=["als"], now_s=NOW.timestamp())
    assert ids(index, found) == ["a", "c", "t1", "t2"]
    assert index.recall(index.user_code("u1"), n=10, sources=["embedding"], now_s=NOW.timestamp()).personal == 0
    assert index.recall(-1, n=10, recent=index.videos.codes(["a"]), sources=["als"]).personal == 0


def test_dimensions_are_indexed_per_video(index):
    codes = index.videos.codes(["a", "t2", "y", "b2"])
    assert index.topic_names(codes) == ["pets", None, "food", None]  # b2 is only a neighbour: no dim row
    assert index.video_creator[codes[3]] == -1
    assert index.creators[index.video_creator[codes[0]]] == "c1"
    assert np.isnan(index.video_upload_s[index.videos.code("c")])
    pool = index.new_pool(NOW.timestamp(), 24)
    assert index.videos.ids(pool) == ["n1"]
    assert index.trending_score_of[index.videos.code("a")] == pytest.approx(20.0)
    assert np.isnan(index.trending_score_of[index.videos.code("b")])


def test_missing_tables_give_an_empty_but_usable_index():
    index = build_recall_index(None, None, None, None, {})
    assert not index.has_candidates and not index.has_neighbours
    found = index.recall(index.user_code("u1"), n=10, recent=np.array([0], dtype=np.int32), explore=3)
    assert len(found) == 0
