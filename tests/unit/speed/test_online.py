"""Known answers for the speed layer's tile logic, on small hand-computed cases.

Two layers: the tile arithmetic lib/reelhouse/speed/online.py builds on (``tile_start``, ``prune``,
``features_from_tiles``, ``add_shares``, ``longest_window_s`` from reelhouse.features.tiles), and
online.py's own merge of changed tiles into an entity's tile row (``_decode``, ``_Entity``,
``OnlineTiles``), driven here through an in-memory dict standing in for the online store (no Spark,
no SQLite, no Redis). The property test in tests/unit/features/test_tiles.py checks tiles against
a reference over random events; these pin exact values at the edges.

Times: ``T0`` is a whole UTC hour; ``H`` an hour; ``DAY`` a day. A tile is named by its start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pytest

from reelhouse.features.registry import ALL_TILE_MEASURES, TILE_S, tile_measures
from reelhouse.features.tiles import add_shares, features_from_tiles, longest_window_s, prune, tile_start
from reelhouse.features.views import tiles_view
from reelhouse.online.store import FeatureRow, feature_version
from reelhouse.speed.online import OnlineTiles, _decode, _Entity

H = TILE_S
DAY = 86_400
T0 = 1_795_000 * H  # a whole hour


def utc(epoch_s: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)


def sums(entity: str, **values: float) -> list[float]:
    """One tile's sums in ``tile_measures(entity)`` order, zero where not given."""
    names = tile_measures(entity)
    assert set(values) <= set(names), set(values) - set(names)
    return [float(values.get(name, 0.0)) for name in names]


# ====================================================================== tile arithmetic (features/tiles.py)


def test_tiles_are_utc_hours():
    assert TILE_S == 3_600  # every expected value below counts in hours


@pytest.mark.parametrize(
    ("epoch_s", "expected"),
    [
        (T0, T0),  # exactly on a boundary: the tile that *starts* there (windows are [start, start + 1h))
        (T0 + 0.001, T0),
        (T0 + H - 0.001, T0),  # the last instant of the hour is still in it
        (T0 + H, T0 + H),  # the next boundary opens the next tile
        (T0 - 0.001, T0 - H),  # a hair before a boundary belongs to the previous hour
        (0, 0),
        (-1, -H),  # floor, not truncation towards zero, before the epoch
    ],
)
def test_tile_start_maps_an_instant_to_the_start_of_its_hour(epoch_s, expected):
    assert tile_start(epoch_s) == expected


def test_longest_windows_are_the_registrys():
    # video: 1h/1d/7d features and the 7d trending score; user and user x topic go up to 28d.
    assert longest_window_s("video") == 7 * DAY
    assert longest_window_s("user") == 28 * DAY
    assert longest_window_s("user_topic") == 28 * DAY


def test_features_of_no_tiles_are_zero_counts_and_null_rates():
    values = features_from_tiles("video", {}, T0)
    assert values["video_impressions_1h"] == 0 and isinstance(values["video_impressions_1h"], int)
    assert values["video_plays_7d"] == 0
    assert values["video_completion_rate_1d"] is None  # 0 / 0 plays: null, not 0 and not an error
    assert values["video_like_rate_7d"] is None
    assert values["video_trending_score"] == 0.0
    assert values["video_age_s"] is None  # no upload_time attribute


def test_a_window_covers_the_tiles_starting_in_as_of_minus_window_up_to_as_of():
    # A feature as of T0 over window W covers events with T0 - W <= time < T0, i.e. the tiles
    # starting at T0 - W, ..., T0 - 1h. Each tile below has a distinct power-of-ish count so
    # every sum names the tiles it took.
    tiles = {
        T0: sums("video", impressions=1000),  # starts at as_of: the future, never counted
        T0 - H: sums("video", impressions=2),  # the last hour: in 1h, 1d, 7d
        T0 - 2 * H: sums("video", impressions=3),  # out of 1h
        T0 - DAY: sums("video", impressions=5),  # starts exactly one day back: the first tile of 1d
        T0 - DAY - H: sums("video", impressions=7),  # one hour too old for 1d
        T0 - 7 * DAY: sums("video", impressions=11),  # the first tile of 7d
        T0 - 7 * DAY - H: sums("video", impressions=13),  # one hour too old for 7d
    }
    values = features_from_tiles("video", tiles, T0)
    assert values["video_impressions_1h"] == 2
    assert values["video_impressions_1d"] == 2 + 3 + 5
    assert values["video_impressions_7d"] == 2 + 3 + 5 + 7 + 11


def test_user_windows_reach_28_days_and_no_further():
    tiles = {
        T0 - 7 * DAY: sums("user", events=1),  # in 7d (first tile) and 28d
        T0 - 7 * DAY - H: sums("user", events=2),  # 28d only
        T0 - 28 * DAY: sums("user", events=4),  # first tile of 28d
        T0 - 28 * DAY - H: sums("user", events=8),  # too old for any window
    }
    values = features_from_tiles("user", tiles, T0)
    assert values["user_events_1d"] == 0
    assert values["user_events_7d"] == 1
    assert values["user_events_28d"] == 1 + 2 + 4


def test_rates_divide_window_sums_and_counts_are_ints():
    # One hour of a video: 8 impressions, 4 plays (one completed, watch ratios summing to 3.0),
    # 2 likes, 1 share, no comment.
    tile = sums("video", impressions=8, plays=4, completions=1, watch_ratio=3.0, likes=2, shares=1)
    values = features_from_tiles("video", {T0 - H: tile}, T0)
    assert values["video_impressions_1h"] == 8 and isinstance(values["video_impressions_1h"], int)
    assert values["video_plays_1h"] == 4 and isinstance(values["video_plays_1h"], int)
    assert values["video_completion_rate_1h"] == 1 / 4  # completions / plays
    assert values["video_mean_watch_ratio_1h"] == 3.0 / 4  # watch_ratio / plays
    assert values["video_like_rate_1h"] == 2 / 8  # likes / impressions
    assert values["video_share_rate_1h"] == 1 / 8
    assert values["video_comment_rate_1h"] == 0.0  # 0 / 8: a real zero, not null


def test_a_rate_with_no_denominator_in_its_window_is_null_even_if_a_longer_window_has_one():
    # The plays happened 2 hours ago: the 1h completion rate has no plays (null), the 1d one has.
    values = features_from_tiles("video", {T0 - 2 * H: sums("video", plays=2, completions=1)}, T0)
    assert values["video_completion_rate_1h"] is None
    assert values["video_completion_rate_1d"] == 0.5


def test_trending_score_halves_every_six_hours_of_tile_age_within_seven_days():
    # weight = 0.5 ** ((as_of - tile_end) / 6h), tile_end = start + 1h.
    tiles = {
        T0 - H: sums("video", engagement=4.0),  # ends at T0: weight 1 -> 4
        T0 - 7 * H: sums("video", engagement=2.0),  # ends 6h before: weight 1/2 -> 1
        T0 - 13 * H: sums("video", engagement=8.0),  # ends 12h before: weight 1/4 -> 2
        # starts exactly 7 days back (still in the 7d window), ends 7d - 1h = 167/6 half-lives
        # before T0: 2**28 * 0.5**(167/6) = 2**(1/6)
        T0 - 7 * DAY: sums("video", engagement=2.0**28),
        T0 - 7 * DAY - H: sums("video", engagement=1000.0),  # outside the window: nothing
        T0: sums("video", engagement=1000.0),  # future tile: nothing
    }
    score = features_from_tiles("video", tiles, T0)["video_trending_score"]
    assert score == pytest.approx(4 + 1 + 2 + 2 ** (1 / 6), rel=1e-12)


def test_video_age_is_seconds_from_upload_to_the_feature_time():
    values = features_from_tiles("video", {}, T0, {"upload_time": T0 - 5_400})
    assert values["video_age_s"] == 5_400 and isinstance(values["video_age_s"], int)


@pytest.mark.parametrize("as_of", [T0 + 1, T0 + H // 2, T0 - 1])
def test_features_are_only_computed_as_of_a_whole_hour(as_of):
    with pytest.raises(ValueError, match="whole hour"):
        features_from_tiles("video", {}, as_of)


def test_prune_keeps_exactly_the_tiles_a_feature_as_of_now_or_later_can_use():
    tiles = {
        T0 - 7 * DAY - H: sums("video", impressions=1),  # age 7d + 1h: no video window reaches it
        T0 - 7 * DAY: sums("video", impressions=2),  # age exactly 7d: still in the 7d window at T0
        T0 - H: sums("video", impressions=3),
        T0 + H: sums("video", impressions=4),  # a later tile (as_of is not the newest): kept
    }
    original = dict(tiles)
    kept = prune(tiles, T0, "video")
    assert set(kept) == {T0 - 7 * DAY, T0 - H, T0 + H}
    assert tiles == original  # a new dict; the input is untouched
    # Invariant of the docstring: features as of T0 and later are the same from the pruned tiles.
    for as_of in (T0, T0 + H, T0 + 2 * H):
        assert features_from_tiles("video", kept, as_of) == features_from_tiles("video", tiles, as_of)


def test_prune_uses_the_entitys_longest_window():
    tiles = {T0 - 28 * DAY - H: [1.0] * 6, T0 - 28 * DAY: [2.0] * 6, T0 - 8 * DAY: [3.0] * 6}
    # A user's tile 8 days old is past every video window but inside the user's 28 days.
    assert set(prune(tiles, T0, "user")) == {T0 - 28 * DAY, T0 - 8 * DAY}
    assert prune({}, T0, "user") == {}


def test_affinity_is_the_topics_engagement_over_the_users():
    values = {"user_topic_engagement_7d": 1.5, "user_topic_engagement_28d": 3.0}
    add_shares("user_topic", values, {"user": {"user_engagement_7d": 6.0, "user_engagement_28d": 0.0}})
    assert values["user_topic_affinity_7d"] == 0.25  # 1.5 / 6
    assert values["user_topic_affinity_28d"] is None  # denominator 0: null


def test_affinity_without_the_user_or_the_topic_value_is_null():
    values = {"user_topic_engagement_7d": 1.5, "user_topic_engagement_28d": None}
    add_shares("user_topic", values, {})
    assert values["user_topic_affinity_7d"] is None  # no user values at all
    values = {"user_topic_engagement_7d": 1.5, "user_topic_engagement_28d": None}
    add_shares("user_topic", values, {"user": {"user_engagement_7d": 3.0, "user_engagement_28d": 3.0}})
    assert values["user_topic_affinity_7d"] == 0.5
    assert values["user_topic_affinity_28d"] is None  # numerator missing


# ============================================================================ speed/online.py pieces


def test_the_tile_view_of_an_entity():
    assert tiles_view("video") == "video_tiles"
    assert tiles_view("user_topic") == "user_topic_tiles"


def test_an_entitys_features_are_as_of_the_end_of_its_latest_tile_whatever_the_insertion_order():
    state = _Entity({T0 - 5 * H: [1.0], T0: [2.0], T0 - 30 * H: [3.0]}, None)
    assert state.as_of == T0 + H  # latest tile starts at T0 and ends an hour later
    assert state.topics == set()


def tile_row(values: dict, key: str = "v1") -> FeatureRow:
    return FeatureRow(key, values, utc(T0), 1)


def test_decode_reads_a_stored_tile_row():
    measures = tile_measures("user")
    # As stored as JSON: starts may come back as floats, topics as a list.
    row = tile_row(
        {
            "measures": list(measures),
            "tiles": [[float(T0 - H), 1, 2, 3, 4, 5, 6]],
            "upload_time": 7,
            "topics": ["b", "a"],
        }
    )
    state = _decode(row, measures)
    assert state.tiles == {T0 - H: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}
    assert all(type(start) is int for start in state.tiles)
    assert state.upload_time == 7
    assert state.topics == {"a", "b"}


def test_decode_starts_afresh_from_no_row_or_a_row_of_other_measures():
    measures = tile_measures("video")
    assert _decode(None, measures).tiles == {}
    # Written under another registry (other measures, or another order): its sums mean something else.
    other = tile_row({"measures": ["impressions"], "tiles": [[T0 - H, 50.0]], "upload_time": 1, "topics": []})
    state = _decode(other, measures)
    assert (state.tiles, state.upload_time, state.topics) == ({}, None, set())
    reordered = tile_row({"measures": list(reversed(measures)), "tiles": [], "upload_time": None, "topics": []})
    assert _decode(reordered, measures).tiles == {}


# ========================================================= OnlineTiles over an in-memory store


class DictStore:
    """The two calls OnlineTiles makes, over a dict: ``views[view][key] -> FeatureRow``."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, FeatureRow]] = {}

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        stored = self.views.get(view, {})
        return {key: stored.get(key) for key in keys}

    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        rows = list(rows)
        self.views.setdefault(view, {}).update({row.entity_key: row for row in rows})
        return len(rows)


SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("key", pa.string()),
        ("tile_start", pa.int64()),
        *[(name, pa.float64()) for name in ALL_TILE_MEASURES],
        ("upload_time", pa.int64()),
    ]
)


def change(entity: str, key: str, start: int, upload_time: int | None = None, **measures: float) -> dict:
    """One changed tile as the speed job hands it over: absolute sums of every measure."""
    assert set(measures) <= set(ALL_TILE_MEASURES), set(measures) - set(ALL_TILE_MEASURES)
    return {
        "entity": entity,
        "key": key,
        "tile_start": start,
        **dict.fromkeys(ALL_TILE_MEASURES, 0.0),
        **measures,
        "upload_time": upload_time,
    }


def batch(*changes: dict) -> pa.Table:
    return pa.Table.from_pylist(list(changes), schema=SCHEMA)


def by_key(rows: list[dict], column: str) -> dict[str, dict]:
    return {row[column]: row for row in rows}


def stored_tiles(store: DictStore, entity: str, key: str) -> list[list[float]]:
    return store.views[tiles_view(entity)][key].values["tiles"]


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def tiles(store) -> OnlineTiles:
    return OnlineTiles(store)


# One hour of video v1 (T0 - 1h .. T0): 4 impressions, 2 plays (one completed, watch ratios 0.75
# each), 1 like -> engagement 0.75 + 0.75 + 1 = 2.5. Uploaded 90 minutes before T0.
V1 = {"impressions": 4.0, "plays": 2.0, "completions": 1.0, "watch_ratio": 1.5, "likes": 1.0, "engagement": 2.5}


def test_a_first_tile_gives_features_as_of_its_end_and_a_stored_tile_row(store, tiles):
    result = tiles.apply(batch(change("video", "v1", T0 - H, upload_time=T0 - 5_400, **V1)))
    assert list(result) == ["video"]
    [row] = result["video"]
    assert row["video_id"] == "v1"
    assert row["feature_time"] == utc(T0)  # the end of the latest tile
    assert row["video_impressions_1h"] == 4
    assert row["video_plays_1h"] == 2
    assert row["video_completion_rate_1h"] == 0.5  # 1 / 2 plays
    assert row["video_mean_watch_ratio_1h"] == 0.75  # 1.5 / 2 plays
    assert row["video_like_rate_1h"] == 0.25  # 1 / 4 impressions
    assert row["video_comment_rate_1h"] == 0.0
    assert row["video_impressions_7d"] == 4
    assert row["video_trending_score"] == 2.5  # the tile ends at the feature time: weight 1
    assert row["video_age_s"] == 5_400

    stored = store.views[tiles_view("video")]["v1"]
    assert stored.values == {
        "measures": list(tile_measures("video")),
        "tiles": [[T0 - H, *sums("video", **V1)]],
        "upload_time": T0 - 5_400,
        "topics": [],
    }
    assert stored.feature_time == utc(T0)
    assert stored.expires_at == utc(T0 + 7 * DAY)  # useless once the newest tile is past every window


def test_the_online_row_version_counts_what_the_tiles_absorbed(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - H, **V1)))
    [online] = [r for view, rows in store.views.items() if view != tiles_view("video") for r in rows.values()]
    # seq = floor of the sum of every sum in the tiles: 4 + 2 + 1 + 1.5 + 1 + 2.5 = 12.
    assert online.version == feature_version(utc(T0), 12)
    assert online.values["video_impressions_1h"] == 4


def test_replaying_a_batch_changes_nothing(store, tiles):
    # Tiles carry absolute sums: the same batch twice is the same state, not doubled counts.
    changed = batch(change("video", "v1", T0 - H, upload_time=T0 - 5_400, **V1))
    first = tiles.apply(changed)
    first_tiles = stored_tiles(store, "video", "v1")
    first_versions = {view: {k: r.version for k, r in rows.items()} for view, rows in store.views.items()}
    second = tiles.apply(changed)
    assert second == first
    assert second["video"][0]["video_impressions_1h"] == 4  # not 8
    assert stored_tiles(store, "video", "v1") == first_tiles
    online_views = [view for view in store.views if view != tiles_view("video")]
    assert {v: {k: r.version for k, r in store.views[v].items()} for v in online_views} == {
        v: first_versions[v] for v in online_views
    }


def test_a_changed_tile_replaces_the_stored_one_and_raises_the_version(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - H, **V1)))
    [view] = [v for v in store.views if v != tiles_view("video")]
    before = store.views[view]["v1"].version
    # Two more impressions in the same hour: the job sends the hour's new total, 6.
    result = tiles.apply(batch(change("video", "v1", T0 - H, **{**V1, "impressions": 6.0})))
    [row] = result["video"]
    assert row["video_impressions_1h"] == 6  # replaced, not 4 + 6
    assert row["video_like_rate_1h"] == 1 / 6
    assert stored_tiles(store, "video", "v1") == [[T0 - H, *sums("video", **{**V1, "impressions": 6.0})]]
    assert store.views[view]["v1"].version == feature_version(utc(T0), 14) > before  # 12 + 2 impressions


def test_tiles_of_later_batches_merge_with_the_stored_ones_and_the_window_slides(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - 2 * H, impressions=2)))
    [row] = tiles.apply(batch(change("video", "v1", T0 - H, impressions=3)))["video"]
    assert row["feature_time"] == utc(T0)
    assert (row["video_impressions_1h"], row["video_impressions_1d"]) == (3, 2 + 3)
    # The next hour: as of T0 + 1h the 1h window holds only the new tile; 1d still all three.
    [row] = tiles.apply(batch(change("video", "v1", T0, impressions=5)))["video"]
    assert row["feature_time"] == utc(T0 + H)
    assert (row["video_impressions_1h"], row["video_impressions_1d"]) == (5, 2 + 3 + 5)
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - 2 * H, T0 - H, T0]  # ascending


def test_a_late_tile_joins_without_moving_the_feature_time(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - H, impressions=3)))
    # A tile three hours old arrives after the newer one (late events, within the watermark).
    [row] = tiles.apply(batch(change("video", "v1", T0 - 3 * H, impressions=4)))["video"]
    assert row["feature_time"] == utc(T0)  # still the end of the latest tile, not of the late one
    assert row["video_impressions_1h"] == 3  # the late tile is 3h old: outside 1h
    assert row["video_impressions_1d"] == 3 + 4
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - 3 * H, T0 - H]  # sorted on write


def test_tiles_past_every_window_are_dropped_from_the_row(store, tiles):
    # First batch: two tiles a week back; as of their end both are young.
    tiles.apply(
        batch(
            change("video", "v1", T0 - 7 * DAY - H, impressions=100),
            change("video", "v1", T0 - 7 * DAY, impressions=10),
        )
    )
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - 7 * DAY - H, T0 - 7 * DAY]
    # A tile of the last hour moves the feature time to T0: the tile of T0 - 7d - 1h can no longer
    # count in any video window (7d at most) and goes; the one exactly 7 days back stays and counts.
    [row] = tiles.apply(batch(change("video", "v1", T0 - H, impressions=3)))["video"]
    assert row["video_impressions_7d"] == 10 + 3
    assert row["video_impressions_1d"] == 3
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - 7 * DAY, T0 - H]


def test_a_tile_older_than_every_window_is_dropped_at_once(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - H, impressions=3)))
    [row] = tiles.apply(batch(change("video", "v1", T0 - 10 * DAY, impressions=50)))["video"]
    assert row["video_impressions_7d"] == 3  # 10 days old: counts nowhere
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - H]


def test_several_tiles_and_keys_in_one_batch(store, tiles):
    result = tiles.apply(
        batch(
            change("video", "v1", T0 - 2 * H, impressions=1),
            change("video", "v1", T0 - H, impressions=2),
            change("video", "v2", T0 - 5 * H, impressions=7),
        )
    )
    rows = by_key(result["video"], "video_id")
    assert set(rows) == {"v1", "v2"}
    assert (rows["v1"]["feature_time"], rows["v1"]["video_impressions_1h"], rows["v1"]["video_impressions_1d"]) == (
        utc(T0),
        2,
        3,
    )
    # v2's latest tile starts 5h before T0: its features are as of 4h before T0.
    assert (rows["v2"]["feature_time"], rows["v2"]["video_impressions_1h"]) == (utc(T0 - 4 * H), 7)


def test_a_stored_row_of_other_measures_is_not_merged(store, tiles):
    store.views[tiles_view("video")] = {
        "v1": tile_row({"measures": ["impressions"], "tiles": [[T0 - 2 * H, 50.0]], "upload_time": None, "topics": []})
    }
    [row] = tiles.apply(batch(change("video", "v1", T0 - H, impressions=3)))["video"]
    assert row["video_impressions_1d"] == 3  # not 53
    assert [t[0] for t in stored_tiles(store, "video", "v1")] == [T0 - H]


def test_an_upload_time_once_known_is_kept(store, tiles):
    tiles.apply(batch(change("video", "v1", T0 - H, upload_time=T0 - 5_400, impressions=1)))
    [row] = tiles.apply(batch(change("video", "v1", T0, impressions=1)))["video"]  # upload_time null
    assert row["video_age_s"] == (T0 + H) - (T0 - 5_400)  # 9000: as of the new feature time


def test_an_empty_batch_writes_and_returns_nothing(store, tiles):
    assert tiles.apply(batch()) == {}
    assert store.views == {}


# ------------------------------------------------------------------- users and their topics

# u1's hour T0 - 1h: 6 events, 3 plays (watch ratios 2.0 in all), 1 like; engagement 4.0.
# Of that engagement, 1.0 went to cats (1 play) and 3.0 to dogs (2 plays).
U1 = {"events": 6.0, "plays": 3.0, "watch_ratio": 2.0, "likes": 1.0, "engagement": 4.0}


def first_user_batch() -> pa.Table:
    return batch(
        change("user", "u1", T0 - H, **U1),
        change("user_topic", "u1|cats", T0 - H, plays=1, engagement=1.0),
        change("user_topic", "u1|dogs", T0 - H, plays=2, engagement=3.0),
    )


def test_user_and_topic_rows_with_affinities(store, tiles):
    result = tiles.apply(first_user_batch())
    [user] = result["user"]
    assert user["user_id"] == "u1"
    assert user["user_events_1d"] == 6
    assert user["user_mean_watch_ratio_1d"] == 2.0 / 3
    assert user["user_like_rate_1d"] == 1 / 3
    assert user["user_engagement_7d"] == 4.0
    topics = by_key(result["user_topic"], "topic")
    assert {(t["user_id"], t["topic"]) for t in topics.values()} == {("u1", "cats"), ("u1", "dogs")}
    assert topics["cats"]["user_topic_affinity_7d"] == 1.0 / 4.0
    assert topics["dogs"]["user_topic_affinity_28d"] == 3.0 / 4.0
    assert topics["dogs"]["user_topic_plays_7d"] == 2
    # The user's tile row remembers its topics, so a later change of the user can reach them.
    assert store.views[tiles_view("user")]["u1"].values["topics"] == ["cats", "dogs"]


def test_a_topic_rows_version_counts_the_users_tiles_too(store, tiles):
    tiles.apply(first_user_batch())
    [view] = [v for v in store.views if v.startswith("user_topic") and v != tiles_view("user_topic")]
    # cats: its own tiles sum to 1 + 1.0 = 2; the affinity also depends on the user's tiles,
    # which sum to 6 + 3 + 2.0 + 1 + 4.0 = 16: seq 18.
    assert store.views[view]["u1|cats"].version == feature_version(utc(T0), 18)


def test_a_users_engagement_change_recomputes_every_topic_of_the_user(store, tiles):
    tiles.apply(first_user_batch())
    # Next batch: only the user's tile changed (engagement 4 -> 8, e.g. plays of videos without a topic).
    result = tiles.apply(batch(change("user", "u1", T0 - H, **{**U1, "events": 10.0, "engagement": 8.0})))
    topics = by_key(result["user_topic"], "topic")
    assert set(topics) == {"cats", "dogs"}  # read back from the store
    assert topics["cats"]["user_topic_affinity_7d"] == 1.0 / 8.0
    assert topics["dogs"]["user_topic_affinity_7d"] == 3.0 / 8.0
    assert topics["dogs"]["user_topic_engagement_7d"] == 3.0  # the topic's own tiles are unchanged


def test_a_user_change_that_leaves_engagement_alone_does_not_touch_the_topics(store, tiles):
    tiles.apply(first_user_batch())
    result = tiles.apply(batch(change("user", "u1", T0 - H, **{**U1, "events": 7.0})))  # an impression more
    assert set(result) == {"user"}  # the affinities' denominator did not move
    assert result["user"][0]["user_events_1d"] == 7


def test_a_topic_change_without_its_user_reads_the_user_from_the_store(store, tiles):
    tiles.apply(first_user_batch())
    restarted = OnlineTiles(store)  # a new job process on the same store
    result = restarted.apply(batch(change("user_topic", "u1|cats", T0 - H, plays=2, engagement=2.0)))
    assert set(result) == {"user_topic"}  # the user itself did not change
    [cats] = result["user_topic"]
    assert cats["user_topic_affinity_7d"] == 2.0 / 4.0  # the stored user's engagement, 4


@pytest.mark.parametrize(
    "follow_up",
    [
        pytest.param(lambda: batch(change("user_topic", "u1|cats", T0 - H, plays=2, engagement=2.0)), id="topic-only"),
        pytest.param(lambda: batch(change("video", "v1", T0 - H, impressions=1)), id="video-only"),
        pytest.param(batch, id="empty"),
    ],
)
def test_a_batch_without_user_tiles_after_an_engagement_change(store, tiles, follow_up):
    tiles.apply(first_user_batch())  # u1's engagement changed (from nothing to 4)
    result = tiles.apply(follow_up())
    # Nothing of u1 changed in this batch, so no user x topic row needs recomputing for its sake.
    assert all(row["topic"] != "dogs" for row in result.get("user_topic", []))
