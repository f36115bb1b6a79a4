"""How a simulated user reacts to a video it is shown: the one behaviour model of the simulator.

The open-loop traffic generator (:mod:`reelhouse.simulator.traffic`, which also chooses what is
shown) and the closed loop (:mod:`reelhouse.simulator.closed_loop`, where the feed service
chooses) both call :func:`react` and :func:`engages`, so a ranker is judged online against
the same users it learned from offline.

- The engagement score of a (user, video) pair is
  ``7 * affinity + 2.5 * (quality - 0.55) - 0.3 * log(duration / 25 s) + user bias - 1 + noise``
  with ``affinity = taste . topic_mix`` and noise ~ N(0, 0.9).
- A score below :data:`SKIP_SCORE` is a ``skip`` after a short watch (0.3-3 s); otherwise a
  ``play`` whose watch ratio ``min(1, 1.15 * sigmoid(score))`` grows with the score.
- A play is followed by a ``like``/``share``/``comment``/``follow`` with probability
  ``sigmoid(bias + slope * score)`` each (:data:`ENGAGEMENT`).
- Sessions: feed pages per session are geometric (:data:`PAGES_P`, at most :data:`MAX_PAGES`),
  videos play back to back with a swipe gap of :data:`SWIPE_GAP_MS`, and nothing new is shown
  after :data:`MAX_SESSION_MS`.

Random draws happen in a fixed order (the noise of every item in :func:`react`, one uniform per
play in :func:`engages`), so a seeded generator gives the same reactions whoever calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelhouse.events.contract import EVENT_TYPES
from reelhouse.simulator.catalogue import Users, Videos

IMPRESSION, PLAY, LIKE, SHARE, COMMENT, FOLLOW, SKIP = (
    EVENT_TYPES.index(name) for name in ("impression", "play", "like", "share", "comment", "follow", "skip")
)

SKIP_SCORE = -1.1  # sigmoid(-1.1) ~ 0.25: below this watch ratio the user swipes away
# (bias, slope) of each engagement's logistic probability given the score; drawn in this order.
ENGAGEMENT = {LIKE: (-3.2, 1.3), SHARE: (-5.0, 1.3), COMMENT: (-5.3, 1.2), FOLLOW: (-5.8, 1.2)}
PAGES_P, MAX_PAGES = 0.35, 12  # feed pages per session: geometric, mean ~2.9
SWIPE_GAP_MS = (250, 1_500)  # between the end of one video and the start of the next, uniform
MAX_SESSION_MS = 20 * 60_000  # nothing new is shown after this; ending pages run on a little


@dataclass
class Reactions:
    """Per shown item: the latent affinity and score, and what the user does."""

    affinity: np.ndarray  # float32: taste . topic_mix of the (user, video) pair
    score: np.ndarray  # float64 engagement score (noise included)
    skipped: np.ndarray  # bool: a skip rather than a play
    watch_ms: np.ndarray  # int64, 1..duration for a play; the short watch of a skip
    duration_ms: np.ndarray  # int64 video duration

    def __len__(self) -> int:
        return len(self.score)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def react(users: Users, videos: Videos, user: np.ndarray, video: np.ndarray, rng: np.random.Generator) -> Reactions:
    """How users ``user[i]`` react to videos ``video[i]`` (catalogue indices); draws one normal per item."""
    taste = users.taste[user]
    mix = videos.mix[video]
    affinity = np.einsum("ij,ij->i", taste, mix)
    duration = videos.duration_ms[video]
    score = (
        7.0 * affinity
        + 2.5 * (videos.quality[video] - 0.55)
        - 0.3 * np.log(duration / 25_000.0)
        + users.watch_bias[user]
        - 1.0
        + rng.normal(0.0, 0.9, size=len(video))
    )
    skipped = score < SKIP_SCORE
    ratio = np.clip(1.15 * sigmoid(score), 0.0, 1.0)
    skip_watch = np.minimum(duration, 300 + (2_700 * sigmoid(score) / sigmoid(SKIP_SCORE)).astype(np.int64))
    watch = np.where(skipped, skip_watch, np.maximum(1, (ratio * duration).astype(np.int64)))
    watch = np.minimum(watch, duration)
    return Reactions(affinity=affinity, score=score, skipped=skipped, watch_ms=watch, duration_ms=duration)


def engages(event_type: int, played_score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which of the plays with these scores an ``event_type`` engagement (a key of :data:`ENGAGEMENT`) follows.

    Draws one uniform per play; callers go through :data:`ENGAGEMENT` in its order.
    """
    bias, slope = ENGAGEMENT[event_type]
    return rng.random(len(played_score)) < sigmoid(bias + slope * played_score)
