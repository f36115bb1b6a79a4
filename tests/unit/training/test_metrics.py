"""Ranker metrics against values worked out by hand (each test says how)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from reelhouse.training.metrics import (
    auc,
    calibration,
    classifier_scores,
    expected_calibration_error,
    log_loss,
    ranking_metrics,
    ranking_scores,
)

LOG2_3 = math.log2(3)


def test_auc_is_the_share_of_correctly_ordered_positive_negative_pairs():
    # Pairs (positive, negative): (.35, .1) right, (.35, .4) wrong, (.8, .1) right, (.8, .4) right -> 3/4.
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_counts_a_tied_pair_as_half_and_is_nan_for_one_class():
    assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_log_loss_is_the_mean_negative_log_likelihood():
    # -(ln 0.8 + ln(1 - 0.4)) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_log_loss_stays_finite_for_certain_wrong_predictions():
    assert math.isfinite(log_loss([1, 0], [0.0, 1.0]))


def test_expected_calibration_error_weighs_each_bin_gap_by_its_share():
    # Bin [0.1, 0.2): 2 examples, mean 0.15, positives 1/2 -> gap 0.35, weight 2/6.
    # Bin [0.8, 0.9): 4 examples, mean 0.85, positives 3/4 -> gap 0.10, weight 4/6.
    labels = [0, 1, 1, 1, 1, 0]
    probabilities = [0.15, 0.15, 0.85, 0.85, 0.85, 0.85]
    assert expected_calibration_error(labels, probabilities) == pytest.approx((2 * 0.35 + 4 * 0.10) / 6)


def test_calibration_bins_count_means_and_positive_shares():
    curve = calibration([0, 1, 1, 0], [0.05, 0.25, 0.75, 1.0], bins=4)
    # Bins [0, .25), [.25, .5), [.5, .75), [.75, 1]: 0.25 opens bin 1, 1.0 closes the last bin.
    np.testing.assert_array_equal(curve.counts, [1, 1, 0, 2])
    np.testing.assert_allclose(curve.mean_predicted[[0, 1, 3]], [0.05, 0.25, 0.875])
    np.testing.assert_allclose(curve.fraction_positive[[0, 1, 3]], [0.0, 1.0, 0.5])
    assert math.isnan(curve.mean_predicted[2])
    # |.05 - 0| * 1/4 + |.25 - 1| * 1/4 + |.875 - .5| * 2/4
    assert curve.ece == pytest.approx(0.05 / 4 + 0.75 / 4 + 0.375 / 2)


def test_ndcg_and_recall_are_averaged_over_users_with_a_positive():
    users = ["a", "a", "a", "b", "b", "c", "c"]
    labels = [0, 1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1]
    result = ranking_metrics(users, labels, scores)
    # a: positives at ranks 2 and 3 -> DCG 1/log2(3) + 1/log2(4); ideal ranks 1 and 2 -> 1 + 1/log2(3).
    ndcg_a = (1 / LOG2_3 + 0.5) / (1 + 1 / LOG2_3)
    # b has no positive and is left out; c's positive is ranked first -> 1.
    assert result.users == 2
    assert result.ndcg == pytest.approx((ndcg_a + 1.0) / 2)
    assert result.recall == pytest.approx(1.0)


def test_only_the_top_k_count():
    # k=2: only the positive at rank 1 is in the top 2 -> recall 1/3; DCG 1, ideal 1 + 1/log2(3).
    result = ranking_metrics(["u"] * 4, [1, 0, 1, 1], [4.0, 3.0, 2.0, 1.0], k=2)
    assert result.recall == pytest.approx(1 / 3)
    assert result.ndcg == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_ties_score_the_expected_value_of_a_random_tie_break():
    # Two tied items, one positive: it is at rank 1 or 2 with equal chance -> DCG (1 + 1/log2(3)) / 2.
    result = ranking_metrics(["u", "u"], [1, 0], [0.5, 0.5])
    assert result.ndcg == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert result.ndcg == pytest.approx(ndcg_score([[1, 0]], [[0.5, 0.5]]))
    # A tie straddling the cut-off: with k=1 the positive makes the top 1 half of the time.
    at_one = ranking_metrics(["u", "u"], [1, 0], [0.5, 0.5], k=1)
    assert at_one.recall == pytest.approx(0.5)
    assert at_one.ndcg == pytest.approx(0.5)


def test_a_tie_below_a_higher_score_starts_after_it():
    # Ranks: 0.9 (negative) first, then a tie of three for ranks 2..4 holding one positive:
    # expected DCG = (1/log2(3) + 1/log2(4) + 1/log2(5)) / 3; ideal DCG = 1.
    result = ranking_metrics(["u"] * 4, [0, 1, 0, 0], [0.9, 0.2, 0.2, 0.2])
    assert result.ndcg == pytest.approx((1 / LOG2_3 + 1 / 2 + 1 / math.log2(5)) / 3)
    assert result.ndcg == pytest.approx(ndcg_score([[0, 1, 0, 0]], [[0.9, 0.2, 0.2, 0.2]]))


def test_row_order_does_not_change_ranking_metrics():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 20, 400)
    labels = rng.integers(0, 2, 400)
    scores = rng.integers(0, 5, 400).astype(float)  # many ties
    shuffled = rng.permutation(400)
    before = ranking_metrics(users, labels, scores)
    after = ranking_metrics(users[shuffled], labels[shuffled], scores[shuffled])
    assert (after.ndcg, after.recall, after.users) == pytest.approx((before.ndcg, before.recall, before.users))


def test_missing_scores_rank_last_and_no_positive_at_all_gives_nan():
    assert ranking_metrics(["u", "u"], [0, 1], [float("nan"), 0.1]).ndcg == pytest.approx(1.0)
    empty = ranking_metrics(["u", "v"], [0, 0], [0.3, 0.2])
    assert empty.users == 0 and math.isnan(empty.ndcg) and math.isnan(empty.recall)


def test_metric_dictionaries_use_the_logged_names():
    users, labels, scores = ["a", "a", "b", "b"], [1, 0, 0, 1], [0.8, 0.3, 0.6, 0.4]
    assert set(ranking_scores(users, labels, scores)) == {"auc", "ndcg_at_10", "recall_at_10"}
    assert set(classifier_scores(users, labels, scores)) == {"auc", "logloss", "ece", "ndcg_at_10", "recall_at_10"}


def test_a_large_train_split_is_sampled_before_it_becomes_a_dataframe() -> None:
    import pyarrow as pa

    from reelhouse.config import TrainingConfig
    from reelhouse.training.splits import _sample_train_in_arrow

    splits = ["train"] * 5_000 + ["valid"] * 300 + ["test"] * 200
    table = pa.table({"split": splits, "row": list(range(len(splits)))})
    sampled, train_rows = _sample_train_in_arrow(table, TrainingConfig(max_fit_rows=1_000, seed=3))
    counts = dict(zip(*np.unique(sampled["split"].to_numpy(zero_copy_only=False), return_counts=True)))
    assert train_rows == 5_000
    assert counts == {"train": 1_000, "valid": 300, "test": 200}
    assert len(set(sampled["row"].to_pylist())) == sampled.num_rows  # no row twice
    again, _ = _sample_train_in_arrow(table, TrainingConfig(max_fit_rows=1_000, seed=3))
    assert again.equals(sampled)  # seeded
