"""The registry declares what the lakehouse-layers work promises, and nothing dangling."""

from __future__ import annotations

import pytest

from reelhouse.features import ENTITIES, ENTITY_KEYS, FEATURES, MEASURES, SHARES, WINDOWS, features_for


@pytest.mark.parametrize(
    ("entity", "windows", "stems"),
    [
        (
            "video",
            ("1h", "1d", "7d"),
            ("impressions", "plays", "completion_rate", "mean_watch_ratio", "like_rate", "share_rate", "comment_rate"),
        ),
        ("user", ("1d", "7d", "28d"), ("events", "plays", "mean_watch_ratio", "like_rate", "share_rate")),
        ("user_topic", ("7d", "28d"), ("engagement",)),
    ],
)
def test_required_features_exist_for_every_window(entity, windows, stems):
    names = {f.name for f in features_for(entity)}
    assert {f"{entity}_{stem}_{w}" for stem in stems for w in windows} <= names


def test_every_feature_refers_to_declared_measures_windows_and_entities():
    for feature in FEATURES:
        assert set(feature.measures) <= set(MEASURES)
        assert feature.window in WINDOWS and feature.entity in ENTITY_KEYS
    assert len({f.name for f in FEATURES}) == len(FEATURES)


def test_rates_divide_by_a_count_of_the_events_they_relate_to():
    # A like rate per impression must not divide by plays, and so on: the denominator is a count.
    for feature in FEATURES:
        if feature.denominator is not None:
            assert MEASURES[feature.denominator].value == "1", feature.name


def test_unknown_entity_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown entity"):
        features_for("creator")


def test_the_entities_are_the_keyed_ones_and_a_shares_denominator_comes_first():
    # The speed layer recomputes entities in this order: an affinity needs its user's values first.
    assert ENTITIES == tuple(ENTITY_KEYS)
    for share in SHARES:
        assert ENTITIES.index(share.denominator_entity) < ENTITIES.index(share.entity), share.name
