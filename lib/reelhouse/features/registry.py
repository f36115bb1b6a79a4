"""The feature registry: every windowed feature, declared once.

A feature is built from **measures**: per-event values (a SQL expression over event columns,
``1`` to count) summed per entity over a window. A feature is one measure's sum, or the ratio
of two sums (a rate or a mean). Sums are what both layers can maintain: the batch layer sums
events of a window in one pass; the speed layer keeps hourly tiles of the sums and adds the
tiles of a window (see tiles.py). The same registry therefore yields the same values in both,
and in training and serving.

Time semantics, shared by both layers:

* A feature *as of* ``t`` (a whole UTC hour) covers the events with ``t - window <= time < t``.
* An event's time is ``LEAST(event_time, received time)``: a device clock running ahead cannot
  place an event after the broker received it (nor push the speed layer's watermark into the
  future). Clocks running behind are bounded by the late-data policies of silver and the speed
  layer.

Besides the windowed sums the registry declares three derived kinds: the decayed trending
score of a video (hourly tiles weighted by a half-life), a video's age (from ``dim_videos``) and
a user's affinity to a topic (the user x topic engagement over the user's total engagement).

The registry owns the entities (:data:`ENTITIES`, :data:`ENTITY_KEYS`); which events are
engagement is engagement.py's, and the online store's view names are views.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from reelhouse.features.engagement import ENGAGEMENT_TYPES, WATCH_RATIO_SQL, WATCH_TYPE

WINDOWS: dict[str, int] = {"1h": 3_600, "1d": 86_400, "7d": 7 * 86_400, "28d": 28 * 86_400}

# Entity -> the event columns that identify it.
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "video": ("video_id",),
    "user": ("user_id",),
    "user_topic": ("user_id", "topic"),
}
# Every entity, in the order the layers compute them: a user x topic's affinity divides by its
# user's engagement, so users come before user x topic.
ENTITIES: tuple[str, ...] = tuple(ENTITY_KEYS)

KEY_SEPARATOR = "|"  # joins the key columns of a multi-column entity into one online-store key
TILE_S = 3_600  # the speed layer's tile, and the resolution of feature times
COMPLETION_THRESHOLD = 0.95  # a play that watched at least 95% of the video completed it


@dataclass(frozen=True)
class Measure:
    """A per-event value, summed over a window; events of other types contribute nothing."""

    name: str
    event_types: tuple[str, ...]
    value: str = "1"  # Spark SQL over event columns
    description: str = ""


# What each engagement event adds to the ``engagement`` measure. Which events those are is
# engagement.py's (_check holds these keys to it); a play adds its watch ratio, not the label's 0/1.
ENGAGEMENT_WEIGHTS: dict[str, str] = {WATCH_TYPE: WATCH_RATIO_SQL, "like": "1.0", "share": "2.0"}

MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "events", ("impression", "play", "like", "share", "comment", "follow", "skip"), description="any activity"
        ),
        Measure("impressions", ("impression",)),
        Measure("plays", ("play",)),
        Measure(
            "completions",
            ("play",),
            f"CASE WHEN watch_ms >= {COMPLETION_THRESHOLD} * video_duration_ms THEN 1 ELSE 0 END",
            f"plays that watched >= {COMPLETION_THRESHOLD:.0%} of the video",
        ),
        Measure("watch_ratio", ("play",), WATCH_RATIO_SQL, "watch time / video duration, capped at 1"),
        Measure("likes", ("like",)),
        Measure("shares", ("share",)),
        Measure("comments", ("comment",)),
        Measure("skips", ("skip",)),
        Measure(
            "engagement",
            ENGAGEMENT_TYPES,
            "CASE event_type "
            + " ".join(f"WHEN '{kind}' THEN {weight}" for kind, weight in ENGAGEMENT_WEIGHTS.items())
            + " ELSE 0.0 END",
            "watch ratio of plays + 1 per like + 2 per share (engagement as engagement.py defines it)",
        ),
    )
}


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    entity: str
    window: str
    numerator: str
    denominator: str | None = None  # a ratio when set; null when the denominator sums to 0
    description: str = ""

    @property
    def window_s(self) -> int:
        return WINDOWS[self.window]

    @property
    def measures(self) -> tuple[str, ...]:
        return (self.numerator,) if self.denominator is None else (self.numerator, self.denominator)


def _family(
    entity: str, windows: tuple[str, ...], shapes: tuple[tuple[str, str, str | None], ...]
) -> list[FeatureSpec]:
    return [
        FeatureSpec(f"{entity}_{stem}_{window}", entity, window, numerator, denominator)
        for window in windows
        for stem, numerator, denominator in shapes
    ]


FEATURES: tuple[FeatureSpec, ...] = tuple(
    _family(
        "video",
        ("1h", "1d", "7d"),
        (
            ("impressions", "impressions", None),
            ("plays", "plays", None),
            ("completion_rate", "completions", "plays"),
            ("mean_watch_ratio", "watch_ratio", "plays"),
            ("like_rate", "likes", "impressions"),
            ("share_rate", "shares", "impressions"),
            ("comment_rate", "comments", "impressions"),
        ),
    )
    + _family(
        "user",
        ("1d", "7d", "28d"),
        (
            ("events", "events", None),
            ("plays", "plays", None),
            ("mean_watch_ratio", "watch_ratio", "plays"),
            ("like_rate", "likes", "plays"),
            ("share_rate", "shares", "plays"),
        ),
    )
    + _family("user", ("7d", "28d"), (("engagement", "engagement", None),))
    + _family(
        "user_topic",
        ("7d", "28d"),
        (
            ("plays", "plays", None),
            ("engagement", "engagement", None),
        ),
    )
)


@dataclass(frozen=True)
class DecayedFeature:
    """Sum of ``measure`` over ``window`` where each hourly tile counts ``0.5 ** (age / half life)``,
    its age measured from the tile's end to the feature time."""

    name: str
    entity: str
    window: str
    measure: str
    half_life_s: int
    description: str = ""


@dataclass(frozen=True)
class ShareFeature:
    """``numerator / denominator`` of two windowed features; the denominator may be another
    entity's (a user x topic value over the user's), joined on the shared keys. Null when the
    denominator is 0 or missing."""

    name: str
    entity: str
    numerator: str
    denominator: str
    denominator_entity: str
    description: str = ""


@dataclass(frozen=True)
class AgeFeature:
    """Seconds from an attribute's timestamp (``dim_videos.upload_time``) to the feature time."""

    name: str
    entity: str
    attribute: str
    description: str = ""


TRENDING_HALF_LIFE_S = 6 * 3_600

DECAYED: tuple[DecayedFeature, ...] = (
    DecayedFeature(
        "video_trending_score",
        "video",
        "7d",
        "engagement",
        TRENDING_HALF_LIFE_S,
        "engagement of the last 7 days, halved every 6 hours of age (per hourly tile)",
    ),
)
SHARES: tuple[ShareFeature, ...] = tuple(
    ShareFeature(
        f"user_topic_affinity_{w}",
        "user_topic",
        f"user_topic_engagement_{w}",
        f"user_engagement_{w}",
        "user",
        f"share of the user's {w} engagement that went to this topic",
    )
    for w in ("7d", "28d")
)
AGES: tuple[AgeFeature, ...] = (
    AgeFeature("video_age_s", "video", "upload_time", "seconds since upload (null for videos not in dim_videos)"),
)


def entity_key(entity: str, row: dict) -> str:
    """The online-store key of ``row``'s entity (``user_id|topic`` for user x topic)."""
    return KEY_SEPARATOR.join(str(row[k]) for k in ENTITY_KEYS[entity])


@cache
def features_for(entity: str) -> tuple[FeatureSpec, ...]:
    if entity not in ENTITY_KEYS:
        raise KeyError(f"unknown entity {entity!r}; known: {sorted(ENTITY_KEYS)}")
    return tuple(f for f in FEATURES if f.entity == entity)


@cache
def derived_for(entity: str) -> tuple[DecayedFeature | ShareFeature | AgeFeature, ...]:
    """The non-windowed features of ``entity``, in declaration order."""
    features_for(entity)  # validates the entity
    return tuple(f for f in (*DECAYED, *AGES, *SHARES) if f.entity == entity)


@cache
def feature_names(entity: str) -> tuple[str, ...]:
    """Every feature column of ``entity``: windowed, then derived."""
    return tuple(f.name for f in features_for(entity)) + tuple(f.name for f in derived_for(entity))


@cache
def tile_measures(entity: str) -> tuple[str, ...]:
    """The measures the speed layer keeps per tile for ``entity`` (sorted, so stable)."""
    needed = {m for f in features_for(entity) for m in f.measures}
    needed |= {f.measure for f in DECAYED if f.entity == entity}
    return tuple(sorted(needed))


ALL_TILE_MEASURES: tuple[str, ...] = tuple(sorted(MEASURES))


def _check() -> None:
    names = [f.name for f in (*FEATURES, *DECAYED, *SHARES, *AGES)]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise TypeError(f"features declared twice: {sorted(duplicates)}")
    for feature in FEATURES:
        unknown = [m for m in feature.measures if m not in MEASURES]
        if unknown or feature.window not in WINDOWS or feature.entity not in ENTITY_KEYS:
            raise TypeError(f"feature {feature.name} refers to unknown measures/window/entity: {unknown}")
    if set(ENGAGEMENT_WEIGHTS) != set(ENGAGEMENT_TYPES):
        raise TypeError(f"engagement weights {sorted(ENGAGEMENT_WEIGHTS)} != engagement types {ENGAGEMENT_TYPES}")
    windowed = {f.name for f in FEATURES}
    for share in SHARES:
        owner = {f.name: f.entity for f in FEATURES}.get(share.denominator)
        if not {share.numerator, share.denominator} <= windowed or owner != share.denominator_entity:
            raise TypeError(f"share {share.name} divides features that are not declared")
        if ENTITIES.index(share.denominator_entity) > ENTITIES.index(share.entity):
            raise TypeError(f"share {share.name}: {share.denominator_entity} must come before {share.entity}")
    for decayed in DECAYED:
        if decayed.measure not in MEASURES or decayed.window not in WINDOWS:
            raise TypeError(f"decayed feature {decayed.name} refers to unknown measure/window")


_check()
