"""Item-item recall with EASE (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019).

EASE learns an items x items weight matrix ``B`` that reconstructs each user's row of the binary
interaction matrix ``X`` from the user's *other* items: minimise ``||X - XB||² + λ||B||²``
subject to ``diag(B) = 0``. The closed form is ``P = (XᵀX + λI)⁻¹``, ``B = -P / diag(P)``
column-wise, with the diagonal set to zero. A user's scores are ``x_u B``. ``λ`` (``reg``)
is the only hyper-parameter; the tuner picks it on validation data.

The Gram matrix is dense (``n x n`` float64, 8 n² bytes, inverted in O(n³)). Above
``max_items`` items the model is restricted to the ``max_items`` items with the most users:
on a 10,000-item catalogue the inversion takes about 15 s and 800 MB on this machine's 2
cores, and the long tail it leaves out is what co-visitation and the content source recall.
Items outside the model are never recommended by it. Input is binary (a pair is there or not):
EASE's least-squares fit is meant for 0/1 targets and weights such as watch ratios only
re-scale rows.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.base import Interactions
from reelhouse.recall.topk import batched, empty, first_k, top_k_dense

log = logging.getLogger(__name__)


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """EASE's closed form from the items' Gram matrix ``XᵀX``: ``B`` with a zero diagonal."""
    g = np.array(gram, dtype=np.float64, copy=True)
    g[np.diag_indices_from(g)] += reg
    p = np.linalg.inv(g)
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


class EaseSource:
    """EASE with ridge ``reg`` (λ) over at most ``max_items`` items (the most engaged ones)."""

    name = "ease"

    def __init__(self, reg: float, max_items: int = 10_000) -> None:
        self.reg = reg
        self.max_items = max_items
        self.items = np.zeros(0, dtype=np.int64)  # model column -> item code
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.history = sp.csr_matrix((0, 0), dtype=np.float32)  # users x model columns, binary

    def fit(self, interactions: Interactions) -> EaseSource:
        seen = interactions.seen()
        users_per_item = np.diff(seen.tocsc().indptr)
        engaged = np.flatnonzero(users_per_item > 0)
        if len(engaged) > self.max_items:
            # The most engaged items; ties broken by code so a rebuild picks the same ones.
            order = np.lexsort((engaged, -users_per_item[engaged]))
            engaged = np.sort(engaged[order[: self.max_items]])
            log.info("EASE: %d engaged items, restricted to the %d most engaged", len(order), self.max_items)
        self.items = engaged.astype(np.int64)
        x = seen[:, self.items].astype(np.float64).tocsr()
        gram = (x.T @ x).toarray()
        self.weights = (
            ease_weights(gram, self.reg).astype(np.float32) if len(self.items) else np.zeros((0, 0), np.float32)
        )
        self.history = x.astype(np.float32).tocsr()
        log.info("EASE λ=%g: %d items", self.reg, len(self.items))
        return self

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        if len(self.items) == 0 or self.history.shape[0] == 0:
            return empty(len(users), k)

        def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            known = batch < self.history.shape[0]
            out_items, out_scores = empty(len(batch), k)
            rows = batch[known]
            history = self.history[rows]
            block = np.asarray(history @ self.weights, dtype=np.float32)
            # A user without history scores 0 everywhere: no answer rather than an arbitrary one.
            block[np.diff(history.indptr) == 0] = -np.inf
            if exclude is not None:
                block[exclude[rows][:, self.items].nonzero()] = -np.inf
            picks, scores = top_k_dense(block, k)
            picked = np.where(picks >= 0, self.items[np.maximum(picks, 0)], -1)
            out_items[known], out_scores[known] = first_k(picked, scores, picks < 0, k)
            return out_items, out_scores

        return batched(users, k, max(1, len(self.items)), answer)
