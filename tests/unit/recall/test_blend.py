"""The blend: quotas, no duplicates, round-robin order, seeded exploration of new videos."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.blend import EXPLORATION, blend


def answer(rows):
    items = np.array(rows, dtype=np.int64)
    return items, np.where(items >= 0, 1.0 / (1 + np.arange(items.shape[1])), -np.inf)


# Two users; "als" and "covisit" overlap on item 1 (user 0) and items 5, 6 (user 1).
RESULTS = {
    "als": answer([[1, 2, 3, 4], [5, 6, 7, -1]]),
    "covisit": answer([[1, 8, 9, 10], [6, 5, 11, 12]]),
}
QUOTAS = {"als": 2, "covisit": 2, "topic": 3}
SEEN = sp.csr_matrix(([1.0, 1.0], ([0, 1], [20, 21])), shape=(2, 30))  # user 0 saw 20, user 1 saw 21
NEW = np.array([20, 21, 22])


def per_user(blended, row):
    at = blended.row == row
    return list(zip(blended.item[at].tolist(), blended.source[at].tolist(), blended.source_rank[at].tolist()))


def test_quotas_are_respected_and_no_item_comes_twice():
    blended = blend(RESULTS, QUOTAS)
    assert per_user(blended, 0) == [(1, "als", 0), (8, "covisit", 1), (2, "als", 1), (9, "covisit", 2)]
    # User 1: covisit's first two were taken by als, so it reaches down to its 3rd and 4th.
    assert per_user(blended, 1) == [(5, "als", 0), (11, "covisit", 2), (6, "als", 1), (12, "covisit", 3)]
    assert blended.counts() == {"als": 4, "covisit": 4}
    for row in (0, 1):
        items = blended.item[blended.row == row]
        assert len(set(items)) == len(items)
    assert blended.position[blended.row == 0].tolist() == [0, 1, 2, 3]


def test_a_source_without_quota_is_left_out():
    blended = blend(RESULTS, {"als": 0, "covisit": 1})
    assert set(blended.source) == {"covisit"} and len(blended) == 2


def test_exploration_fills_its_slots_with_new_videos_the_user_has_not_seen():
    blended = blend(RESULTS, QUOTAS, exploration_slots=2, new_items=NEW, seed=1, seen=SEEN, users=np.array([0, 1]))
    for row, saw in ((0, 20), (1, 21)):
        picks = [i for i, s, _ in per_user(blended, row) if s == EXPLORATION]
        assert len(picks) == 2 and set(picks) == set(NEW) - {saw}
    scores = blended.score[blended.source == EXPLORATION]
    assert np.isnan(scores).all()
    assert blended.lists(2).shape == (2, 6)


def test_exploration_is_deterministic_with_the_seed():
    many_new = np.arange(100, 400)
    runs = [blend(RESULTS, QUOTAS, 3, many_new, seed=seed) for seed in (5, 5, 6)]
    first, again, other = (r.item[r.source == EXPLORATION].tolist() for r in runs)
    assert first == again and len(first) == 6 and len(set(first[:3])) == 3
    assert first != other


def test_exploration_never_repeats_a_candidate_of_a_source():
    # The only new video is one als already recommends: nothing left to explore.
    blended = blend(RESULTS, QUOTAS, exploration_slots=1, new_items=np.array([1]), seed=1)
    assert per_user(blended, 0)[-1][1] != EXPLORATION
