"""Feature definitions, declared once and read by the batch (gold) and streaming (speed) layers."""

from reelhouse.features.registry import (
    AGES,
    DECAYED,
    ENTITIES,
    ENTITY_KEYS,
    FEATURES,
    MEASURES,
    SHARES,
    TILE_S,
    WINDOWS,
    FeatureSpec,
    Measure,
    derived_for,
    feature_names,
    features_for,
    tile_measures,
)

__all__ = [
    "AGES",
    "DECAYED",
    "ENTITIES",
    "ENTITY_KEYS",
    "FEATURES",
    "MEASURES",
    "SHARES",
    "TILE_S",
    "WINDOWS",
    "FeatureSpec",
    "Measure",
    "derived_for",
    "feature_names",
    "features_for",
    "tile_measures",
]
