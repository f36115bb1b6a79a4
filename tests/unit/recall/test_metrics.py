import math

import numpy as np
import pytest

from reelhouse.recall.metrics import metric_names, positives_matrix, stored_at, topk_metrics

L3, L5 = math.log2(3), math.log2(5)


def _example():
    # Four users over a catalogue of 10 items:
    # u0 hits at ranks 2 and 4 of 3 positives; u1 one positive at rank 1 then padding;
    # u2 has no positives (left out); u3 repeats item 3, whose copies are not hits again.
    recommended = np.array([[1, 2, 3, 4], [5, -1, -1, -1], [7, 8, 7, 6], [3, 3, 3, 0]])
    users = np.array([0, 0, 0, 1, 3, 3])
    items = np.array([2, 4, 9, 5, 3, 0])
    return recommended, positives_matrix(users, items, 4, 10)


def test_metrics_match_hand_computed_values():
    recommended, positives = _example()
    got = topk_metrics(recommended, positives, [2, 4])

    # Per evaluated user (u0, u1, u3), written out from the definitions.
    expected = {
        "recall@2": [1 / 3, 1, 1 / 2],
        "precision@2": [1 / 2, 1 / 2, 1 / 2],
        # IDCG@2 = 1 + 1/log2(3) for u0 (3 positives) and u3 (2); 1 for u1 (1 positive).
        "ndcg@2": [(1 / L3) / (1 + 1 / L3), 1, 1 / (1 + 1 / L3)],
        # AP@2: precision at each hit, over min(2, |P|).
        "map@2": [(1 / 2) / 2, 1, 1 / 2],
        "hit_rate@2": [1, 1, 1],
        "recall@4": [2 / 3, 1, 1],
        "precision@4": [2 / 4, 1 / 4, 2 / 4],
        "ndcg@4": [(1 / L3 + 1 / L5) / (1 + 1 / L3 + 1 / 2), 1, (1 + 1 / L5) / (1 + 1 / L3)],
        "map@4": [(1 / 2 + 2 / 4) / 3, 1, (1 + 2 / 4) / 2],
        "hit_rate@4": [1, 1, 1],
    }
    for name, values in expected.items():
        assert got[name] == pytest.approx(np.mean(values)), name
    # Distinct items in the evaluated users' lists: {1,2,5,3} at 2, {0..5} at 4; u2's are not counted.
    assert got["coverage@2"] == pytest.approx(4 / 10)
    assert got["coverage@4"] == pytest.approx(6 / 10)
    assert list(got) == metric_names([2, 4])


def test_short_lists_are_padded_and_k_order_is_normalised():
    recommended, positives = _example()
    short = topk_metrics(recommended[:, :2], positives, [4, 2])
    full = topk_metrics(np.hstack([recommended[:, :2], np.full((4, 2), -1)]), positives, [2, 4])
    assert short == pytest.approx(full)


def test_no_positives_gives_nan_and_bad_k_is_rejected():
    empty = positives_matrix(np.array([], dtype=int), np.array([], dtype=int), 2, 5)
    got = topk_metrics(np.zeros((2, 3), dtype=int), empty, [3])
    assert all(math.isnan(v) for v in got.values())
    with pytest.raises(ValueError):
        topk_metrics(np.zeros((2, 3), dtype=int), empty, [0])


def test_stored_at_ignores_padding():
    matrix = positives_matrix(np.array([0, 1]), np.array([2, 0]), 2, 3)
    assert stored_at(matrix, np.array([0, 0, 1, 1]), np.array([2, -1, 0, 2])).tolist() == [True, False, True, False]


def test_large_inputs_are_vectorised_and_sane():
    # 100k users x K=20 in one call (the protocol evaluates several models); no timing asserted —
    # the machines are shared — but random recommendations over 50k items hit almost nothing.
    rng = np.random.default_rng(0)
    n, n_items = 100_000, 50_000
    recommended = rng.integers(0, n_items, size=(n, 20))
    users = rng.integers(0, n, size=500_000)
    positives = positives_matrix(users, rng.integers(0, n_items, size=users.size), n, n_items)
    got = topk_metrics(recommended, positives, [10, 20])
    assert 0 <= got["recall@20"] < 0.01
