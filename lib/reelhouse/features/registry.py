"""The feature registry: every windowed feature, declared once.

A feature is built from **measures**: per-event values (a SQL expression over event columns,
``1`` to count) summed per entity over a window. A feature is one measure's sum, or the ratio
of two sums (a rate or a mean). Sums are what both layers can maintain: the batch layer sums
events of a window in one pass; the speed layer adds each event to its sliding windows. The
same registry therefore yields the same values in both, and in training and serving.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOWS: dict[str, int] = {"1h": 3_600, "1d": 86_400, "7d": 7 * 86_400, "28d": 28 * 86_400}

# Entity -> the event columns that identify it.
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "video": ("video_id",),
    "user": ("user_id",),
    "user_topic": ("user_id", "topic"),
}

COMPLETION_THRESHOLD = 0.95  # a play that watched at least 95% of the video completed it


@dataclass(frozen=True)
class Measure:
    """A per-event value, summed over a window; events of other types contribute nothing."""

    name: str
    event_types: tuple[str, ...]
    value: str = "1"  # Spark SQL over event columns
    description: str = ""


_WATCH_RATIO = "LEAST(CAST(watch_ms AS DOUBLE) / video_duration_ms, 1.0)"

MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("events", ("impression", "play", "like", "share", "comment", "follow", "skip"), description="any activity"),
        Measure("impressions", ("impression",)),
        Measure("plays", ("play",)),
        Measure(
            "completions",
            ("play",),
            f"CASE WHEN watch_ms >= {COMPLETION_THRESHOLD} * video_duration_ms THEN 1 ELSE 0 END",
            f"plays that watched >= {COMPLETION_THRESHOLD:.0%} of the video",
        ),
        Measure("watch_ratio", ("play",), _WATCH_RATIO, "watch time / video duration, capped at 1"),
        Measure("likes", ("like",)),
        Measure("shares", ("share",)),
        Measure("comments", ("comment",)),
        Measure("skips", ("skip",)),
        Measure(
            "engagement",
            ("play", "like", "share", "comment"),
            f"CASE event_type WHEN 'play' THEN {_WATCH_RATIO} WHEN 'like' THEN 1.0 "
            "WHEN 'share' THEN 2.0 WHEN 'comment' THEN 1.0 ELSE 0.0 END",
            "watch ratio of plays + 1 per like or comment + 2 per share",
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


def _family(entity: str, windows: tuple[str, ...], shapes: tuple[tuple[str, str, str | None], ...]) -> list[FeatureSpec]:
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
    + _family(
        "user_topic",
        ("7d", "28d"),
        (
            ("plays", "plays", None),
            ("engagement", "engagement", None),
        ),
    )
)


def features_for(entity: str) -> tuple[FeatureSpec, ...]:
    if entity not in ENTITY_KEYS:
        raise KeyError(f"unknown entity {entity!r}; known: {sorted(ENTITY_KEYS)}")
    return tuple(f for f in FEATURES if f.entity == entity)


def _check() -> None:
    names = [f.name for f in FEATURES]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise TypeError(f"features declared twice: {sorted(duplicates)}")
    for feature in FEATURES:
        unknown = [m for m in feature.measures if m not in MEASURES]
        if unknown or feature.window not in WINDOWS or feature.entity not in ENTITY_KEYS:
            raise TypeError(f"feature {feature.name} refers to unknown measures/window/entity: {unknown}")


_check()
