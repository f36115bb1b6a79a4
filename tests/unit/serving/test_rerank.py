"""Re-ranking rules on small hand-made pages: seen removed, caps, exploration slots, k, relaxation."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from reelhouse.serving.rerank import explore, rerank


def page(scores, topics=None, creators=None, exploration=None, k=5, max_topic=3, max_creator=2, slots=0, seen=None):
    n = len(scores)
    result = rerank(
        np.asarray(scores, dtype=float),
        np.asarray(topics if topics is not None else range(n)),
        np.asarray(creators if creators is not None else range(n)),
        np.asarray(exploration if exploration is not None else [False] * n),
        k,
        max_topic,
        max_creator,
        slots,
        None if seen is None else np.asarray(seen),
    )
    return result.picked.tolist(), result.relaxed


def test_highest_scores_first_and_k_honoured():
    picked, relaxed = page([0.1, 0.9, 0.5, 0.7, 0.3, 0.8], k=3)
    assert picked == [1, 5, 3] and not relaxed


def test_seen_videos_never_come_back_even_with_the_best_scores():
    picked, _ = page([0.9, 0.8, 0.7, 0.6], k=3, seen=[True, False, True, False])
    assert picked == [1, 3]  # only two unseen candidates: a shorter page, never a seen video


def test_topic_cap_skips_to_the_next_topic():
    # Topic 0 holds the four best; the cap (2) lets two in, then topic 1 fills.
    picked, relaxed = page([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], topics=[0, 0, 0, 0, 1, 1], k=4, max_topic=2)
    assert picked == [0, 1, 4, 5] and not relaxed
    assert max(Counter([0, 0, 0, 0, 1, 1][i] for i in picked).values()) <= 2


def test_creator_cap_applies_across_topics():
    creators = [7, 7, 7, 8, 9]
    picked, _ = page([0.9, 0.8, 0.7, 0.6, 0.5], topics=[0, 1, 2, 3, 4], creators=creators, k=4, max_creator=2)
    assert picked == [0, 1, 3, 4]


def test_unknown_topic_or_creator_counts_against_no_cap():
    picked, relaxed = page([0.9, 0.8, 0.7], topics=[-1, -1, -1], creators=[-1, -1, -1], k=3, max_topic=1, max_creator=1)
    assert picked == [0, 1, 2] and not relaxed


def test_exploration_slot_is_kept_even_when_it_scores_last():
    exploration = [False, False, False, False, True]
    picked, _ = page([0.9, 0.8, 0.7, 0.6, 0.1], exploration=exploration, k=3, slots=1)
    assert picked == [0, 1, 4]  # the exploration video replaces the third best, and stays in score order


def test_more_exploration_than_slots_compete_on_score():
    exploration = [True, True, False, False]
    picked, _ = page([0.9, 0.8, 0.7, 0.1], exploration=exploration, k=3, slots=1)
    # One slot is reserved; beyond it exploration videos compete like the others.
    assert picked == [0, 1, 2]


def test_without_exploration_candidates_the_slot_goes_to_the_rest():
    picked, _ = page([0.9, 0.8, 0.7], k=3, slots=2)
    assert picked == [0, 1, 2]


def test_caps_are_relaxed_rather_than_return_fewer_than_k():
    # One topic only: the cap (2) cannot be met for k=4; the page is still 4 long, best first.
    picked, relaxed = page([0.9, 0.8, 0.7, 0.6, 0.5], topics=[3] * 5, k=4, max_topic=2)
    assert picked == [0, 1, 2, 3] and relaxed


def test_relaxation_fills_the_exploration_slot_before_anything_else():
    # The only exploration video breaks the creator cap; it still gets its slot.
    picked, relaxed = page(
        [0.9, 0.8, 0.7, 0.2],
        creators=[1, 1, 2, 1],
        exploration=[False, False, False, True],
        k=3,
        max_creator=2,
        slots=1,
    )
    assert 3 in picked and len(picked) == 3 and relaxed
    assert picked == [0, 1, 3]


def test_nan_scores_rank_last_and_k_larger_than_candidates():
    picked, _ = page([np.nan, 0.2, 0.4], k=10)
    assert picked == [2, 1, 0]


def test_a_realistic_page_respects_every_rule():
    rng = np.random.default_rng(3)
    n = 300
    scores, topics, creators = rng.random(n), rng.integers(0, 8, n), rng.integers(0, 40, n)
    exploration, seen = rng.random(n) < 0.05, rng.random(n) < 0.2
    result = rerank(scores, topics, creators, exploration, 20, 3, 2, 1, seen)
    picked = result.picked
    assert len(picked) == 20 and len(set(picked.tolist())) == 20 and not result.relaxed
    assert not seen[picked].any()
    assert max(Counter(topics[picked].tolist()).values()) <= 3
    assert max(Counter(creators[picked].tolist()).values()) <= 2
    assert exploration[picked].sum() >= 1
    assert (np.diff(scores[picked]) <= 0).all()


# -- epsilon-greedy exploration and its propensities ----------------------------------------------

EXPLORE_SEED = int(os.environ.get("REELHOUSE_TEST_SEED", "20261206"))


def test_explore_without_epsilon_serves_the_rules_page_with_propensity_one():
    page = np.array([3, 1, 2])
    picked, propensity = explore(page, np.array([0.1, 0.5, 0.2, 0.9]), 0.0, np.random.default_rng(0))
    assert picked.tolist() == [3, 1, 2]
    assert propensity.tolist() == [1.0, 1.0, 1.0]


def test_explore_propensities_are_the_probabilities_of_what_each_slot_showed():
    """Monte Carlo: the frequency of (slot, video, history) matches the logged propensity."""
    rng = np.random.default_rng(EXPLORE_SEED)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.05])
    page = np.array([0, 1, 2])
    epsilon, draws = 0.3, 20_000
    first_slot = Counter()
    logged = {}
    for _ in range(draws):
        picked, propensity = explore(page, scores, epsilon, rng)
        assert len(set(picked.tolist())) == 3 and ((propensity > 0) & (propensity <= 1)).all()
        first_slot[int(picked[0])] += 1
        logged[int(picked[0])] = float(propensity[0])
    assert logged[0] == pytest.approx(1 - epsilon + epsilon / 5)
    assert logged[4] == pytest.approx(epsilon / 5)
    for video, count in first_slot.items():
        assert count / draws == pytest.approx(logged[video], abs=0.015), f"seed {EXPLORE_SEED} (REELHOUSE_TEST_SEED)"


def test_explore_second_slot_propensity_counts_only_the_remaining_candidates():
    class Draws:  # first slot explores and draws the second candidate left; second slot is greedy
        def __init__(self):
            self.uniforms = iter([0.0, 0.99])

        def random(self):
            return next(self.uniforms)

        def integers(self, high):
            return 1

    picked, propensity = explore(np.array([0, 1]), np.array([0.9, 0.8, 0.1]), 0.2, Draws())
    assert picked.tolist() == [1, 0]  # the draw took the page's second video; slot 2's greedy is the first
    assert propensity.tolist() == pytest.approx([0.2 / 3, 1 - 0.2 + 0.2 / 2])
