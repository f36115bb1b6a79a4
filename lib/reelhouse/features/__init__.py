"""Feature definitions, declared once and read by the batch (gold) and streaming (speed) layers."""

from reelhouse.features.registry import ENTITY_KEYS, FEATURES, MEASURES, WINDOWS, FeatureSpec, Measure, features_for

__all__ = ["ENTITY_KEYS", "FEATURES", "MEASURES", "WINDOWS", "FeatureSpec", "Measure", "features_for"]
