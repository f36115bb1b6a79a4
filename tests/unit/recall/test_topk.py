"""Top-k helpers: masks, order, padding."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.topk import excluded_mask, first_k, top_k_dense, top_k_sparse


def test_excluded_mask_looks_up_each_users_row():
    exclude = sp.csr_matrix(([1, 1, 1], ([0, 0, 2], [3, 1, 0])), shape=(3, 5))
    items = np.array([[1, 2, -1], [1, 3, 0]])
    assert excluded_mask(exclude, np.array([0, 2]), items).tolist() == [[True, False, False], [False, False, True]]


def test_top_k_dense_skips_minus_infinity_and_pads():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, 0.2, -np.inf]], dtype=np.float32)
    items, best = top_k_dense(scores, 3)
    assert items.tolist() == [[1, 3, 0], [2, -1, -1]]
    assert np.isneginf(best[1, 1:]).all()


def test_top_k_sparse_orders_each_row_and_breaks_ties_by_item():
    matrix = sp.csr_matrix(np.array([[0, 3, 1, 2], [0, 0, 0, 0], [5, 0, 0, 0], [0, 0, 4, 4]], dtype=np.float32))
    items, best = top_k_sparse(matrix, 2)
    assert items.tolist() == [[1, 3], [-1, -1], [0, -1], [2, 3]]
    assert best[0].tolist() == [3, 2]


def test_first_k_keeps_order_and_drops_masked():
    items = np.array([[4, 5, 6]])
    got, _ = first_k(items, np.ones((1, 3), dtype=np.float32), np.array([[False, True, False]]), 4)
    assert got.tolist() == [[4, 6, -1, -1]]
