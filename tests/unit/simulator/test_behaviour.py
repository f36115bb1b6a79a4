"""The shared behaviour model: what a user does with a shown video, for the open and the closed loop."""

from __future__ import annotations

import numpy as np

from reelhouse.simulator.behaviour import ENGAGEMENT, LIKE, SHARE, SKIP_SCORE, engages, react, sigmoid
from reelhouse.simulator.catalogue import Catalogue


def _pairs(catalogue: Catalogue, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(catalogue.users), n), rng.integers(0, catalogue.initial_videos, n)


def test_reactions_follow_the_documented_rules(catalogue: Catalogue) -> None:
    users, videos = _pairs(catalogue, 20_000)
    r = react(catalogue.users, catalogue.videos, users, videos, np.random.default_rng(1))
    assert np.array_equal(r.skipped, r.score < SKIP_SCORE)
    assert np.array_equal(r.duration_ms, catalogue.videos.duration_ms[videos])
    assert (r.watch_ms >= 1).all() and (r.watch_ms <= r.duration_ms).all()
    # A play watches min(1, 1.15 sigmoid(score)) of the video (truncated to whole ms).
    played = ~r.skipped
    expected = np.minimum(np.clip(1.15 * sigmoid(r.score[played]), 0, 1) * r.duration_ms[played], r.duration_ms[played])
    assert np.all(np.abs(r.watch_ms[played] - expected) <= 1)
    # A skip is a short look: 0.3 to 3 s (or the whole video if shorter).
    skipped = r.watch_ms[r.skipped]
    assert (skipped <= np.minimum(3_000, r.duration_ms[r.skipped])).all() and (skipped >= 300).all()
    # The affinity is taste . topic mix, and it raises the score.
    assert np.allclose(r.affinity, np.einsum("ij,ij->i", catalogue.users.taste[users], catalogue.videos.mix[videos]))
    assert np.corrcoef(r.affinity, r.score)[0, 1] > 0.3


def test_the_same_seed_gives_the_same_reactions_and_engagements(catalogue: Catalogue) -> None:
    users, videos = _pairs(catalogue, 2_000)
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(7)
        r = react(catalogue.users, catalogue.videos, users, videos, rng)
        runs.append((r.watch_ms, [engages(t, r.score[~r.skipped], rng) for t in ENGAGEMENT]))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_engagement_rises_with_the_score_and_likes_outnumber_shares() -> None:
    rng = np.random.default_rng(3)
    low, high = np.full(50_000, -1.0), np.full(50_000, 2.0)
    for event_type in ENGAGEMENT:
        assert engages(event_type, high, rng).mean() > engages(event_type, low, rng).mean()
    # sigmoid(-3.2 + 1.3 s) vs sigmoid(-5.0 + 1.3 s): at s = 2, ~0.35 against ~0.08.
    assert abs(engages(LIKE, high, rng).mean() - sigmoid(-3.2 + 2.6)) < 0.01
    assert engages(LIKE, high, rng).mean() > 3 * engages(SHARE, high, rng).mean()
