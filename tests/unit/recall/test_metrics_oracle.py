"""reelhouse's ranking metrics against an external oracle: Microsoft Recommenders' published values.

The fixture is the one of Recommenders' evaluation tests (``rating_true`` and ``rating_pred`` in
``tests/unit/recommenders/evaluation/conftest.py``) and the expected values are the ones its
``test_python_evaluation.py`` asserts for ``ndcg_at_k``, ``map_at_k``, ``precision_at_k`` and
``recall_at_k`` at K=10 with their defaults: every item in ``rating_true`` is relevant (binary,
whatever its rating), each user's top K predictions by score are the recommendations, nDCG uses
the log2 discount, precision divides by K and recall by the user's relevant items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reelhouse.recall.metrics import positives_matrix, topk_metrics

TOL = 1e-4

# fmt: off
RATING_TRUE = pd.DataFrame({
    "user": [1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1],
    "item": [3, 1, 4, 5, 6, 7, 2, 5, 6, 8, 9, 10, 11, 12, 13, 14, 1, 2],
    "rating": [3, 5, 5, 3, 3, 1, 5, 5, 5, 4, 4, 3, 3, 3, 2, 1, 5, 4],
})
RATING_PRED = pd.DataFrame({
    "user": [1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1],
    "item": [12, 10, 3, 5, 11, 13, 4, 10, 7, 13, 1, 3, 5, 2, 11, 14, 3, 10],
    "prediction": [12, 14, 13, 12, 11, 10, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 14, 13],
})
# fmt: on
# test_python_ndcg_at_k, test_python_map_at_k, test_python_precision_at_k, test_python_recall_at_k
EXPECTED_AT_10 = {"ndcg@10": 0.38172, "map@10": 0.23613, "precision@10": 0.26666, "recall@10": 0.37777}


def _recommendations(pred: pd.DataFrame, users: list[int], k: int) -> np.ndarray:
    """Each user's items by descending prediction, ``-1`` padded to K (items are their own codes)."""
    rows = np.full((len(users), k), -1, dtype=np.int64)
    for row, user in enumerate(users):
        ranked = pred[pred.user == user].sort_values("prediction", ascending=False, kind="stable")
        top = ranked["item"].to_numpy()[:k]
        rows[row, : len(top)] = top
    return rows


def _metrics(pred: pd.DataFrame, k: int = 10) -> dict[str, float]:
    users = sorted(RATING_TRUE.user.unique())
    codes = {user: row for row, user in enumerate(users)}
    n_items = int(max(RATING_TRUE.item.max(), pred.item.max())) + 1
    truth = positives_matrix(RATING_TRUE.user.map(codes).to_numpy(), RATING_TRUE.item.to_numpy(), len(users), n_items)
    return topk_metrics(_recommendations(pred, users, k), truth, [k])


@pytest.mark.parametrize("metric", sorted(EXPECTED_AT_10))
def test_metrics_match_recommenders_published_values(metric: str) -> None:
    assert _metrics(RATING_PRED)[metric] == pytest.approx(EXPECTED_AT_10[metric], abs=TOL)


def test_the_truth_ranked_by_its_own_ratings_is_perfect_where_recommenders_says_so() -> None:
    # Recommenders asserts ndcg 1, map@k 1, recall 1 and precision 0.6 for rating_true as its own prediction
    # (users hold 3, 5 and 10 relevant items: (3/10 + 5/10 + 10/10) / 3 = 0.6).
    own = RATING_TRUE.rename(columns={"rating": "prediction"})
    metrics = _metrics(own)
    assert metrics["ndcg@10"] == pytest.approx(1.0, abs=TOL)
    assert metrics["map@10"] == pytest.approx(1.0, abs=TOL)
    assert metrics["recall@10"] == pytest.approx(1.0, abs=TOL)
    assert metrics["precision@10"] == pytest.approx(0.6, abs=TOL)


def test_no_hit_scores_zero() -> None:
    nohit = RATING_PRED.assign(item=100)
    metrics = _metrics(nohit)
    assert all(metrics[name] == 0.0 for name in EXPECTED_AT_10)
