"""The columns of a training set: what rankers read, shared by the builder, the trainer and serving.

One row per impression. Model inputs are the registry's features of the impression's video, user
and (user, video topic), as known at the impression (point-in-time), plus a few context columns
the request carries. Labels come from the outcomes that followed the impression.
"""

from __future__ import annotations

from reelhouse.features.registry import ENTITIES, feature_names

# Identify the example and place it in time.
ID_COLUMNS: tuple[str, ...] = ("request_id", "user_id", "video_id", "impression_time")

# Context known when the feed is requested (strings: one-hot / categorical in the models).
CATEGORICAL_COLUMNS: tuple[str, ...] = ("device_os", "device_network", "topic", "user_country", "user_age_group")
# Numeric context: slot on the page and hour of day (UTC) of the request.
CONTEXT_NUMERIC_COLUMNS: tuple[str, ...] = ("position", "hour_of_day")

# Logged with the impression by whatever served it, carried with the example and never a model
# input: ``variant`` (the A/B arm, ``<experiment>:<variant>``) and ``propensity``, the probability
# the serving policy showed this video at this position (docs/events.md), for off-policy
# evaluation. Both are null for impressions logged without them (the open-loop simulator's).
VARIANT = "variant"
PROPENSITY = "propensity"
LOGGING_COLUMNS: tuple[str, ...] = (VARIANT, PROPENSITY)

# Registry features, per entity, in registry order.
FEATURE_COLUMNS: tuple[str, ...] = tuple(name for entity in ENTITIES for name in feature_names(entity))
NUMERIC_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, *CONTEXT_NUMERIC_COLUMNS)
MODEL_INPUT_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
if set(LOGGING_COLUMNS) & set(MODEL_INPUT_COLUMNS):
    # A ranker fed the logging policy's own propensity would learn the policy, not the user.
    raise TypeError(f"logging columns {LOGGING_COLUMNS} must not be model inputs")

# Labels. ``label`` is the primary engagement label: any outcome was engagement as
# features/engagement.py defines it (watch ratio >= training.positive_watch_ratio, or a like or a
# share); ``watch_ratio`` (0..1, 0 without a play) is for regression or weighting.
LABEL = "label"
WATCH_RATIO = "watch_ratio"
OUTCOME_COLUMNS: tuple[str, ...] = ("played", "completed", "liked", "shared", "commented", "followed", "skipped")
# The flag of each outcome event type: 1 when an event of that type followed the impression.
OUTCOME_FLAGS: dict[str, str] = {
    "play": "played",
    "like": "liked",
    "share": "shared",
    "comment": "commented",
    "follow": "followed",
    "skip": "skipped",
}


def feature_time_column(entity: str) -> str:
    """When ``entity``'s feature row became known (null: the entity had no row yet): an audit
    of the point-in-time join, never a model input."""
    return f"{entity}_feature_time"


FEATURE_TIME_COLUMNS: tuple[str, ...] = tuple(feature_time_column(entity) for entity in ENTITIES)

SPLIT = "split"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
