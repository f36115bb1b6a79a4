"""Top-k selection shared by the recall sources: masking seen items, padding, batching.

Every function works on whole batches of users at once (numpy, no per-user Python loop).
Results follow :class:`~reelhouse.recall.base.RecallSource`: ``(items, scores)``, ``n x k``,
best first, padded with item ``-1`` and score ``-inf``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

NO_ITEM = -1

# Cells (rows x columns) of a dense score block computed at once: 8M float32 is 32 MB.
DENSE_BUDGET = 8_000_000


def empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n x k`` of nothing: items -1, scores -inf."""
    return np.full((n, k), NO_ITEM, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)


def row_batches(n_rows: int, n_cols: int, budget: int = DENSE_BUDGET) -> Iterator[slice]:
    """Slices of ``range(n_rows)`` such that a ``rows x n_cols`` block stays within ``budget`` cells."""
    step = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def batched(
    users: np.ndarray, k: int, width: int, answer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """``answer`` over batches of ``users`` small enough that a ``batch x width`` block fits the budget."""
    items, scores = empty(len(users), k)
    for rows in row_batches(len(users), width):
        items[rows], scores[rows] = answer(users[rows])
    return items, scores


def excluded_counts(exclude: sp.csr_matrix | None, users: np.ndarray) -> np.ndarray:
    """Items each user must not get (0 without a mask): how far a source has to over-fetch."""
    if exclude is None or len(users) == 0:
        return np.zeros(len(users), dtype=np.int64)
    return np.diff(exclude.indptr)[users].astype(np.int64)


def excluded_mask(exclude: sp.csr_matrix | None, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Boolean ``len(users) x c``: ``exclude[users[i], items[i, j]]`` is stored (``-1`` items: False)."""
    mask = np.zeros(items.shape, dtype=bool)
    if exclude is None or items.size == 0:
        return mask
    rows = exclude[users]
    rows.eliminate_zeros()
    rows.sort_indices()
    width = np.int64(exclude.shape[1])
    # Row-major keys of the stored cells are sorted, so membership is one searchsorted.
    stored = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(rows.indptr)) * width + rows.indices
    if stored.size == 0:
        return mask
    valid = items >= 0
    keys = np.arange(len(users), dtype=np.int64)[:, None] * width + np.where(valid, items, 0)
    at = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
    return valid & (stored[at] == keys)


def mask_dense(block: np.ndarray, exclude: sp.csr_matrix | None, users: np.ndarray) -> np.ndarray:
    """Set ``block[i, j]`` of a dense ``users x all items`` score block to ``-inf`` where ``exclude[users[i], j]``."""
    if exclude is not None and len(users):
        rows = exclude[users]
        block[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
    return block


def first_k(items: np.ndarray, scores: np.ndarray, drop: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` columns not dropped, keeping their order; padded."""
    drop = drop | (items < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    out_items = np.take_along_axis(items, order, axis=1).astype(np.int64)
    out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    gone = np.take_along_axis(drop, order, axis=1)
    out_items[gone] = NO_ITEM
    out_scores[gone] = -np.inf
    if out_items.shape[1] < k:
        pad_items, pad_scores = empty(len(items), k - out_items.shape[1])
        out_items = np.hstack([out_items, pad_items])
        out_scores = np.hstack([out_scores, pad_scores])
    return out_items, out_scores


def top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best columns of a dense score block (``-inf`` cells never chosen)."""
    n, m = scores.shape
    if k <= 0 or m == 0:
        return empty(n, max(k, 0))
    kk = min(k, m)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_scores, order, axis=1)
    return first_k(items, best, ~np.isfinite(best), k)


def top_k_sparse(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` largest stored values of a sparse matrix (ties: lower column first)."""
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    n = matrix.shape[0]
    if k <= 0 or matrix.nnz == 0:
        return empty(n, max(k, 0))
    # Each row's stored values left-aligned in a dense block (-inf after them), then dense top-k:
    # a partition per row is much cheaper than sorting every stored value.
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(n), counts)
    offset = np.arange(matrix.nnz) - matrix.indptr[rows]
    values = np.full((n, int(counts.max())), -np.inf, dtype=np.float32)
    columns = np.full(values.shape, NO_ITEM, dtype=np.int64)
    values[rows, offset] = matrix.data
    columns[rows, offset] = matrix.indices
    picks, scores = top_k_dense(values, k)
    items = np.where(picks >= 0, np.take_along_axis(columns, np.maximum(picks, 0), axis=1), NO_ITEM)
    return _ties_by_item(items, scores)


def _ties_by_item(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows re-ordered best first with equal scores by ascending item (padding stays last)."""
    if items.size == 0:
        return items, scores
    rank_items = np.where(items >= 0, items, np.iinfo(np.int64).max)
    order = np.lexsort((rank_items, -scores.astype(np.float64)), axis=1)
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1)


def mask_columns(exclude: sp.csr_matrix | None, users: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Boolean ``len(users) x len(columns)``: ``exclude[users[i], columns[j]]``, the same columns for all rows."""
    if exclude is None or len(columns) == 0 or len(users) == 0:
        return np.zeros((len(users), len(columns)), dtype=bool)
    return exclude[users][:, columns].toarray() != 0


def drop_excluded(matrix: sp.csr_matrix, users: np.ndarray, exclude: sp.csr_matrix | None) -> sp.csr_matrix:
    """``matrix`` (rows = ``users``) without the cells ``exclude`` marks."""
    if exclude is None:
        return matrix
    mask = exclude[users].astype(bool).astype(np.float32)
    return (matrix - matrix.multiply(mask)).tocsr()
