"""What counts as engagement, defined once: the training label, the registry's ``engagement``
measure and the videos serving records as engaged (the seeds of realtime recall) all use it.

An event is engagement when it is

* a like or a share (:data:`ENGAGING_TYPES`), whatever else happened, or
* a play (:data:`WATCH_TYPE`) whose watch ratio (``watch_ms / video_duration_ms``, capped at 1:
  :func:`watch_ratio`, :data:`WATCH_RATIO_SQL`) reaches ``training.positive_watch_ratio``.

Nothing else is: not impressions, skips or follows, and **not comments**. Decision: the training
label is what the rankers learn to predict, so it sets the definition, and it does not count
comments. Serving and the registry's measure follow it (both used to count comments), so a video a
user only commented on neither seeds realtime recall nor adds to engagement features, just as a
comment alone does not make a training example positive.

Users of the definition:

* training (``training/dataset.py``): an impression is positive when any outcome attributed to it
  is engagement, i.e. its best play's watch ratio reaches the threshold or an engaging type
  followed;
* serving (``serving/app.py``): :func:`is_engagement` per posted event;
* the feature registry: the ``engagement`` measure sums the same events, graded rather than
  thresholded (a play adds its watch ratio: a feature keeps how much was watched, the label
  decides what is enough), with the weights declared there.

The threshold itself is configuration (``training.positive_watch_ratio``); callers pass it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WATCH_TYPE = "play"  # engagement when watched to at least training.positive_watch_ratio
ENGAGING_TYPES: tuple[str, ...] = ("like", "share")  # engagement by themselves
ENGAGEMENT_TYPES: tuple[str, ...] = (WATCH_TYPE, *ENGAGING_TYPES)  # every type that can be engagement

# The watch ratio of a play as Spark SQL over event columns (the contract guarantees
# video_duration_ms >= 1 on plays); watch_ratio() below is the same rule in Python.
WATCH_RATIO_SQL = "LEAST(CAST(watch_ms AS DOUBLE) / video_duration_ms, 1.0)"


def watch_ratio(watch_ms: int, video_duration_ms: int) -> float:
    """The share of the video a play watched, capped at 1 (a replay does not count twice)."""
    return min(watch_ms / video_duration_ms, 1.0)


def is_engagement(event: Mapping[str, Any], positive_watch_ratio: float) -> bool:
    """Whether one contract event (a dict with ``event_type`` and, for plays, ``watch_ms`` and
    ``video_duration_ms``) is engagement."""
    kind = event["event_type"]
    if kind in ENGAGING_TYPES:
        return True
    if kind == WATCH_TYPE:
        return watch_ratio(event["watch_ms"], event["video_duration_ms"]) >= positive_watch_ratio
    return False
