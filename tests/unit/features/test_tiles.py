"""Features from hourly tiles equal a direct computation over the events (the batch semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelhouse.features.registry import DECAYED, MEASURES, TILE_S, WINDOWS, features_for, tile_measures
from reelhouse.features.tiles import add_shares, features_from_tiles, prune, tile_start

AS_OF = 1_795_000 * TILE_S  # a whole hour
TYPES = ("impression", "play", "like", "share", "comment", "skip")


def measure_value(name: str, event: dict) -> float:
    measure = MEASURES[name]
    if event["type"] not in measure.event_types:
        return 0.0
    ratio = min(event["watch"] / event["duration"], 1.0)
    return {
        "watch_ratio": ratio,
        "completions": float(event["watch"] >= 0.95 * event["duration"]),
        "engagement": {"play": ratio, "like": 1.0, "share": 2.0}.get(event["type"], 0.0),  # comments: 0
    }.get(name, 1.0)


def reference(entity: str, events: list[dict]) -> dict:
    """The batch definition, written out event by event."""
    values = {}
    for spec in features_for(entity):
        inside = [e for e in events if AS_OF - spec.window_s <= e["t"] < AS_OF]
        numerator = sum(measure_value(spec.numerator, e) for e in inside)
        if spec.denominator is None:
            values[spec.name] = numerator
        else:
            denominator = sum(measure_value(spec.denominator, e) for e in inside)
            values[spec.name] = numerator / denominator if denominator else None
    for feature in (d for d in DECAYED if d.entity == entity):
        inside = [e for e in events if AS_OF - WINDOWS[feature.window] <= e["t"] < AS_OF]
        values[feature.name] = sum(
            measure_value(feature.measure, e) * 0.5 ** ((AS_OF - (tile_start(e["t"]) + TILE_S)) / feature.half_life_s)
            for e in inside
        )
    return values


def tiles_of(entity: str, events: list[dict]) -> dict[int, list[float]]:
    names = tile_measures(entity)
    tiles: dict[int, list[float]] = {}
    for event in events:
        sums = tiles.setdefault(tile_start(event["t"]), [0.0] * len(names))
        for i, name in enumerate(names):
            sums[i] += measure_value(name, event)
    return tiles


event_strategy = st.fixed_dictionaries(
    {
        "t": st.integers(AS_OF - 30 * 86_400, AS_OF + 7_200),
        "type": st.sampled_from(TYPES),
        "watch": st.integers(0, 60_000),
        "duration": st.integers(1_000, 30_000),
    }
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(event_strategy, max_size=40), entity=st.sampled_from(["video", "user", "user_topic"]))
def test_tiles_give_the_batch_values(events, entity):
    got = features_from_tiles(entity, tiles_of(entity, events), AS_OF)
    for name, expected in reference(entity, events).items():
        assert got[name] == (None if expected is None else pytest.approx(expected, rel=1e-9, abs=1e-9)), name


@settings(max_examples=50, deadline=None)
@given(events=st.lists(event_strategy, max_size=40))
def test_pruning_keeps_every_tile_a_later_feature_uses(events):
    tiles = tiles_of("user", events)
    assert features_from_tiles("user", prune(tiles, AS_OF, "user"), AS_OF) == features_from_tiles("user", tiles, AS_OF)


def test_age_needs_the_attribute_and_feature_times_are_whole_hours():
    assert features_from_tiles("video", {}, AS_OF, {"upload_time": AS_OF - 90})["video_age_s"] == 90
    assert features_from_tiles("video", {}, AS_OF)["video_age_s"] is None
    with pytest.raises(ValueError, match="whole hour"):
        features_from_tiles("video", {}, AS_OF + 1)


def test_affinity_divides_by_the_users_engagement():
    values = {"user_topic_engagement_7d": 1.5, "user_topic_engagement_28d": 2.0}
    add_shares("user_topic", values, {"user": {"user_engagement_7d": 3.0, "user_engagement_28d": 0.0}})
    assert values["user_topic_affinity_7d"] == pytest.approx(0.5)
    assert values["user_topic_affinity_28d"] is None
