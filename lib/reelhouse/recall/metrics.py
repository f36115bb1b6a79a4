"""Top-K ranking metrics over the whole catalogue, for many users and several K at once.

Inputs are recommended item codes per user (``n x K``, best first, padded with ``-1``) and the
user's held-out positives (a sparse ``n x n_items`` matrix, row ``i`` for row ``i`` of the
recommendations). Users without held-out positives are left out of every average. With ``P``
the user's positives and ``hit_j`` 1 when the item at rank ``j`` (1-based) is in ``P``:

- ``recall@K``    = hits in the top K / ``|P|``
- ``precision@K`` = hits in the top K / K (a short list still divides by K)
- ``hit_rate@K``  = 1 when the top K holds at least one positive
- ``ndcg@K``      = sum(hit_j / log2(j + 1)) / IDCG, IDCG the same sum for ``min(K, |P|)`` hits
- ``map@K``       = sum(precision@j * hit_j) / ``min(K, |P|)``
- ``coverage@K``  = distinct items in the evaluated users' top K / catalogue size

A repeated item in a row counts once (its later copies are not hits). All of it is numpy over
whole arrays: 100k users x K=20 takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

METRICS: tuple[str, ...] = ("recall", "precision", "ndcg", "map", "hit_rate", "coverage")


def metric_names(k_list: Sequence[int]) -> list[str]:
    """``recall@10, precision@10, ..., coverage@20``: K by K, each K's metrics in :data:`METRICS` order."""
    return [f"{metric}@{k}" for k in k_list for metric in METRICS]


def positives_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary ``n_users x n_items`` CSR of (user, item) code pairs (repeats count once)."""
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (np.asarray(users), np.asarray(items))), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def stored_at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Boolean: is cell ``(rows[i], cols[i])`` stored (and non-zero) in ``matrix``? Negative cols: False.

    ``rows`` and ``cols`` have the same shape; one ``searchsorted`` over the row-major keys.
    """
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    width = np.int64(matrix.shape[1])
    stored = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * width + matrix.indices
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    valid = (cols >= 0) & (cols < width)
    if stored.size == 0:
        return np.zeros(cols.shape, dtype=bool)
    keys = rows * width + np.where(valid, cols, 0)
    at = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
    return valid & (stored[at] == keys)


def first_occurrences(items: np.ndarray) -> np.ndarray:
    """Boolean ``n x K``: the cell is the first copy of its item in its row (``-1`` padding: False)."""
    n, k = items.shape
    if items.size == 0:
        return np.zeros(items.shape, dtype=bool)
    width = np.int64(max(int(items.max()), 0) + 1)
    keys = np.arange(n, dtype=np.int64)[:, None] * width + np.where(items >= 0, items, 0)
    first = np.zeros(n * k, dtype=bool)
    first[np.unique(keys.ravel(), return_index=True)[1]] = True
    return first.reshape(n, k) & (items >= 0)


def topk_metrics(
    recommended: np.ndarray,
    positives: sp.csr_matrix,
    k_list: Sequence[int],
    n_catalogue: int | None = None,
) -> dict[str, float]:
    """Mean of each metric at each K over the rows that have positives (see the module docstring).

    ``recommended``: ``n x K`` item codes (fewer columns than ``max(k_list)`` count as padding);
    ``positives``: ``n x n_items``; ``n_catalogue`` defaults to ``n_items``. With no row having
    positives every metric is NaN.
    """
    k_list = sorted({int(k) for k in k_list})
    if not k_list or k_list[0] < 1:
        raise ValueError(f"K values must be positive integers, got {k_list}")
    positives = sp.csr_matrix(positives)
    n_rows, n_items = positives.shape
    recommended = np.asarray(recommended, dtype=np.int64).reshape(n_rows, -1)
    k_max = k_list[-1]
    if recommended.shape[1] < k_max:
        pad = np.full((n_rows, k_max - recommended.shape[1]), -1, dtype=np.int64)
        recommended = np.hstack([recommended, pad])
    recommended = recommended[:, :k_max]
    n_catalogue = n_items if n_catalogue is None else n_catalogue

    positives.sum_duplicates()
    positives.eliminate_zeros()
    n_positive = np.diff(positives.indptr)
    evaluated = n_positive > 0
    if not evaluated.any():
        return {name: float("nan") for name in metric_names(k_list)}
    recs = recommended[evaluated]
    n_pos = n_positive[evaluated].astype(np.float64)
    rows = np.flatnonzero(evaluated)
    hit = stored_at(positives, np.broadcast_to(rows[:, None], recs.shape), recs) & first_occurrences(recs)
    hit = hit.astype(np.float64)

    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m]: DCG of m hits on top
    cum_hits = np.cumsum(hit, axis=1)
    precision_at = cum_hits / ranks

    result: dict[str, float] = {}
    for k in k_list:
        hits = cum_hits[:, k - 1]
        best = np.minimum(n_pos, k)
        top = recs[:, :k]
        result[f"recall@{k}"] = float(np.mean(hits / n_pos))
        result[f"precision@{k}"] = float(np.mean(hits / k))
        result[f"ndcg@{k}"] = float(np.mean((hit[:, :k] @ discount[:k]) / ideal[best.astype(np.int64)]))
        result[f"map@{k}"] = float(np.mean((precision_at[:, :k] * hit[:, :k]).sum(axis=1) / best))
        result[f"hit_rate@{k}"] = float(np.mean(hits > 0))
        result[f"coverage@{k}"] = float(np.unique(top[top >= 0]).size / n_catalogue) if n_catalogue else float("nan")
    return {name: result[name] for name in metric_names(k_list)}


def ndcg_per_row(recommended: np.ndarray, positives: sp.csr_matrix, k: int) -> np.ndarray:
    """nDCG@``k`` of each row that has positives (the per-user values :func:`topk_metrics` averages)."""
    positives = sp.csr_matrix(positives)
    positives.sum_duplicates()
    positives.eliminate_zeros()
    n_rows = positives.shape[0]
    recs = np.full((n_rows, k), -1, dtype=np.int64)
    given = np.asarray(recommended, dtype=np.int64).reshape(n_rows, -1)[:, :k]
    recs[:, : given.shape[1]] = given
    n_pos = np.diff(positives.indptr)
    rows = np.flatnonzero(n_pos > 0)
    recs = recs[rows]
    hit = (stored_at(positives, np.broadcast_to(rows[:, None], recs.shape), recs) & first_occurrences(recs)).astype(
        float
    )
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    return (hit @ discount) / ideal[np.minimum(n_pos[rows], k)]
