"""The tuner's holdout (per user or by time) and its grid search, on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from reelhouse.config import RecallConfig
from reelhouse.recall.base import Interactions
from reelhouse.recall.tuning import TUNING_METRIC, holdout_mask, split_holdout, tune_recall


def make_interactions(pairs_per_user, n_items=60, times=None, seed=0, pool=None):
    """Users with the given numbers of distinct random items among the first ``pool`` (default
    all); times 0 unless given."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(len(pairs_per_user)), pairs_per_user)
    item = np.concatenate([rng.choice(pool or n_items, size=n, replace=False) for n in pairs_per_user])
    return Interactions(
        user_ids=np.array([f"u{u}" for u in range(len(pairs_per_user))], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        weight=np.ones(len(user), np.float32),
        time_s=np.zeros(len(user)) if times is None else np.asarray(times, np.float64),
    )


def test_per_user_each_user_keeps_round_of_the_rest_and_single_pair_users_hold_nothing():
    # fraction 0.3: keep = max(round(0.7 n), 1), hold n - keep. n=1: 1 kept (nothing to hold),
    # n=2: round(1.4)=1 -> 1 held, n=3: round(2.1)=2 -> 1, n=7: round(4.9)=5 -> 2,
    # n=10: 7 -> 3, n=20: 14 -> 6. (No n with 0.7 n ending in .5, where rounding rules differ.)
    sizes = [1, 2, 3, 7, 10, 20, 1, 10]
    data = make_interactions(sizes)
    held = holdout_mask(data, 0.3, temporal=False, seed=5)
    per_user = np.bincount(data.user[held], minlength=data.n_users)
    assert per_user.tolist() == [0, 1, 1, 2, 3, 6, 0, 3]
    assert (np.bincount(data.user[~held], minlength=data.n_users) >= 1).all()  # every user keeps a pair


def test_a_large_fraction_still_leaves_every_user_one_pair():
    # fraction 0.9: round(0.1 n) is 0 for n = 2..4; the floor of one kept pair applies.
    data = make_interactions([2, 3, 4, 30])
    held = holdout_mask(data, 0.9, temporal=False, seed=1)
    assert np.bincount(data.user[~held], minlength=4).tolist() == [1, 1, 1, 3]


def test_per_user_holdout_is_seeded():
    data = make_interactions([8] * 50)
    first = holdout_mask(data, 0.25, temporal=False, seed=3)
    assert np.array_equal(first, holdout_mask(data, 0.25, temporal=False, seed=3))
    other = holdout_mask(data, 0.25, temporal=False, seed=4)
    assert not np.array_equal(first, other)  # a different seed draws different pairs...
    assert np.array_equal(  # ...but the same number per user
        np.bincount(data.user[first], minlength=50), np.bincount(data.user[other], minlength=50)
    )


def test_per_user_holdout_draws_pairs_uniformly():
    # Over many seeds, each of a user's 10 pairs is held out about 3 times in 10 (not, say, the
    # first or last pairs of the user's rows, which a sort without the random key would give).
    data = make_interactions([10] * 4)
    counts = sum(holdout_mask(data, 0.3, temporal=False, seed=s).astype(int) for s in range(400))
    assert counts.min() > 0.2 * 400 and counts.max() < 0.4 * 400


def test_temporal_holds_out_exactly_the_latest_share():
    # 20 pairs at distinct times (shuffled across users): fraction 0.25 holds the 5 latest.
    rng = np.random.default_rng(2)
    times = rng.permutation(20) * 60.0 + 1_000.0
    data = make_interactions([5, 5, 5, 5], times=times)
    held = holdout_mask(data, 0.25, temporal=True, seed=0)
    assert held.sum() == 5
    assert data.time_s[held].min() > data.time_s[~held].max()


def test_temporal_without_distinct_times_falls_back_to_per_user():
    data = make_interactions([4, 4, 4])  # all times 0: a time cut means nothing
    assert np.array_equal(holdout_mask(data, 0.25, True, seed=8), holdout_mask(data, 0.25, False, seed=8))


def test_split_holdout_returns_the_rest_and_the_held_pairs():
    data = make_interactions([5, 6, 7])
    fit, positives = split_holdout(data, 0.4, temporal=False, seed=2)
    held = holdout_mask(data, 0.4, temporal=False, seed=2)
    assert len(fit.user) == (~held).sum() and positives.nnz == held.sum()
    # Held and kept pairs partition the log: their matrices add up to the whole one.
    assert ((fit.seen() + positives) != data.seen()).nnz == 0


class ShiftedOracle:
    """Knows the held-out positives; puts ``shift`` never-relevant items before them.

    nDCG@10 falls as ``shift`` grows, so the best grid value is the smallest shift.
    """

    def __init__(self, name, truth: sp.csr_matrix, junk: np.ndarray, shift: int) -> None:
        self.name, self.truth, self.junk, self.shift = name, truth, junk, shift
        self.fitted_pairs: list[int] = []

    def fit(self, interactions):
        self.fitted_pairs.append(len(interactions.user))
        return self

    def recommend(self, users, k, exclude=None):
        items = np.full((len(users), k), -1, dtype=np.int64)
        for row, user in enumerate(users):
            ranked = np.concatenate([self.junk[: self.shift], self.truth[user].indices])[:k]
            items[row, : len(ranked)] = ranked
        return items, np.where(items >= 0, 1.0, -np.inf).astype(np.float32)


def tuning_case():
    # 40 users x 6 pairs over items 0..29; items 30..39 nobody engaged: the oracle's junk.
    data = make_interactions([6] * 40, n_items=40, seed=1, pool=30)
    recall = RecallConfig(
        quotas={"covisit": 10, "ease": 5},
        tuning_fraction=0.3,
        tuning_grid={"covisit": {"covisit_shrink": [2.0, 0.0, 5.0], "covisit_recent_items": [3, 1]}},
    )
    _, truth = split_holdout(data, recall.tuning_fraction, temporal=False, seed=recall.seed)
    return data, recall, truth, np.arange(30, 40)


def test_the_tuner_picks_the_grid_value_that_is_really_best():
    data, recall, truth, junk = tuning_case()
    built = []

    def make_source(candidate, name):
        built.append(name)
        return ShiftedOracle(name, truth, junk, shift=int(candidate.covisit_shrink))

    tuned, result = tune_recall(recall, make_source, data, temporal=False, seed=recall.seed)
    # shift 0 puts every held-out positive on top (nDCG 1); 2 and 5 push them down. recent_items
    # does not change the answer, so its two values tie and the first in grid order (3) wins.
    assert result.chosen == {"covisit": {"covisit_shrink": 0.0, "covisit_recent_items": 3}}
    assert tuned.covisit_shrink == 0.0 and tuned.covisit_recent_items == 3
    assert recall.covisit_shrink == RecallConfig().covisit_shrink  # the input is not modified
    assert result.holdout == "per-user random"
    assert result.users == (np.diff(truth.indptr) > 0).sum()

    trials = result.trials["covisit"]
    combos = [(t["covisit_shrink"], t["covisit_recent_items"]) for t in trials]
    assert combos == [(2.0, 3), (2.0, 1), (0.0, 3), (0.0, 1), (5.0, 3), (5.0, 1)]  # every combination, in order
    score = {(t["covisit_shrink"], t["covisit_recent_items"]): t[TUNING_METRIC] for t in trials}
    assert score[(0.0, 3)] == pytest.approx(1.0)
    assert score[(0.0, 3)] > score[(2.0, 3)] > score[(5.0, 3)]
    assert score[(2.0, 3)] == score[(2.0, 1)]
    # ease has a quota but no grid: it keeps its settings and is never built.
    assert built == ["covisit"] * 6
    assert "ease" not in result.chosen and tuned.ease_reg == recall.ease_reg


def test_a_source_the_data_cannot_feed_is_left_alone():
    data, recall, truth, junk = tuning_case()
    recall = recall.model_copy(update={"tuning_grid": {**recall.tuning_grid, "ease": {"ease_reg": [1.0, 2.0]}}})

    def make_source(candidate, name):
        return None if name == "ease" else ShiftedOracle(name, truth, junk, shift=int(candidate.covisit_shrink))

    tuned, result = tune_recall(recall, make_source, data, temporal=False, seed=recall.seed)
    assert list(result.chosen) == ["covisit"] and "ease" not in result.trials
    assert tuned.ease_reg == recall.ease_reg


def test_later_sources_are_tuned_with_the_values_chosen_before_them():
    data, recall, truth, junk = tuning_case()
    recall = recall.model_copy(update={"tuning_grid": {**recall.tuning_grid, "ease": {"ease_reg": [1.0, 2.0]}}})
    seen_by_ease = []

    def make_source(candidate, name):
        if name == "ease":
            seen_by_ease.append(candidate.covisit_shrink)
            # ease_reg 2 is better here: its shift is 1 instead of 3.
            return ShiftedOracle(name, truth, junk, shift=4 - int(2 * candidate.ease_reg) + 1)
        return ShiftedOracle(name, truth, junk, shift=int(candidate.covisit_shrink))

    tuned, result = tune_recall(recall, make_source, data, temporal=False, seed=recall.seed)
    assert seen_by_ease == [0.0, 0.0]  # covisit's choice (0.0), not the configured 10.0
    assert result.chosen["ease"] == {"ease_reg": 2.0} and tuned.ease_reg == 2.0
    assert len(result.trials["ease"]) == 2


def test_a_source_without_a_quota_is_not_tuned():
    data, recall, truth, junk = tuning_case()
    recall = recall.model_copy(update={"quotas": {"covisit": 0, "ease": 5}})
    tuned, result = tune_recall(
        recall, lambda c, n: ShiftedOracle(n, truth, junk, 0), data, temporal=False, seed=recall.seed
    )
    assert result.chosen == {} and tuned.covisit_shrink == recall.covisit_shrink


def test_with_tune_off_the_config_comes_back_unchanged_and_nothing_is_built():
    data, recall, _, _ = tuning_case()
    recall = recall.model_copy(update={"tune": False})

    def make_source(candidate, name):
        raise AssertionError("tune=False must not build any source")

    tuned, result = tune_recall(recall, make_source, data, temporal=False, seed=recall.seed)
    assert tuned is recall
    assert result.chosen == {} and result.trials == {} and result.users == 0


def test_the_trials_are_scored_on_held_out_pairs_only():
    # Each trial's source is fitted on the pairs left after the holdout, never on all of them.
    data, recall, truth, junk = tuning_case()
    sources = []

    def make_source(candidate, name):
        source = ShiftedOracle(name, truth, junk, shift=int(candidate.covisit_shrink))
        sources.append(source)
        return source

    tune_recall(recall, make_source, data, temporal=False, seed=recall.seed)
    covisit = [s for s in sources if s.name == "covisit"]
    assert len(covisit) == 6
    assert all(s.fitted_pairs == [len(data.user) - truth.nnz] for s in covisit)


def test_a_configured_grid_of_integer_settings_tunes_a_real_source():
    from reelhouse.recall.candidates import make_source

    data = make_interactions([5] * 30, n_items=20, seed=3)
    # Validated like a config file's recall section (load_config validates the same way).
    recall = RecallConfig.model_validate(
        {"quotas": {"covisit": 10}, "tuning_grid": {"covisit": {"covisit_recent_items": [1, 3]}}}
    )
    tuned, result = tune_recall(recall, lambda c, n: make_source(None, c, n, data, None), data, temporal=False, seed=1)
    assert isinstance(tuned.covisit_recent_items, int)
    assert len(result.trials["covisit"]) == 2
