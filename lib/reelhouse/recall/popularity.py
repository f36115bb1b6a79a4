"""Popularity recall: what engages everybody lately, the same list for every user.

The answer for users the personal sources know nothing about (cold start), and a floor
under every blend.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.base import Interactions
from reelhouse.recall.topk import batched, empty, excluded_counts, first_k, mask_columns


def decayed_popularity(interactions: Interactions, half_life_h: float, as_of_s: float | None = None) -> np.ndarray:
    """Per item code, the sum of its pair weights, each halved per ``half_life_h`` of age.

    A pair's age runs from its latest interaction to ``as_of_s`` (default: the latest
    interaction of all), so a pair counts fully as long as the user keeps engaging.
    """
    if interactions.weight.size == 0:
        return np.zeros(interactions.n_items)
    reference = float(interactions.time_s.max()) if as_of_s is None else as_of_s
    age_h = np.maximum(reference - interactions.time_s, 0.0) / 3600.0
    decayed = interactions.weight.astype(np.float64) * np.power(0.5, age_h / half_life_h)
    return np.bincount(interactions.item, weights=decayed, minlength=interactions.n_items)


def rank_items(scores: np.ndarray) -> np.ndarray:
    """Codes of the items with a positive score, best first (ties: lower code first)."""
    positive = np.flatnonzero(scores > 0)
    return positive[np.lexsort((positive, -scores[positive]))]


class PopularitySource:
    """Items by decayed engagement (``half_life_h``), from ``as_of_s`` or the latest interaction."""

    name = "popularity"

    def __init__(self, half_life_h: float, as_of_s: float | None = None) -> None:
        self.half_life_h = half_life_h
        self.as_of_s = as_of_s
        self.scores = np.zeros(0)
        self.ranked = np.zeros(0, dtype=np.int64)

    def fit(self, interactions: Interactions) -> PopularitySource:
        self.scores = decayed_popularity(interactions, self.half_life_h, self.as_of_s)
        self.ranked = rank_items(self.scores)
        return self

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most popular item codes and their scores, for anybody (``-1`` padded)."""
        items, scores = empty(1, k)
        head = self.ranked[:k]
        items[0, : len(head)] = head
        scores[0, : len(head)] = self.scores[head]
        return items[0], scores[0]

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)

        def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Enough of the ranking's head that k survive the batch's most excluding user.
            depth = min(len(self.ranked), k + int(excluded_counts(exclude, batch).max(initial=0)))
            head = np.broadcast_to(self.ranked[:depth], (len(batch), depth))
            scores = np.broadcast_to(self.scores[self.ranked[:depth]].astype(np.float32), head.shape)
            return first_k(head, scores, mask_columns(exclude, batch, self.ranked[:depth]), k)

        width = k + int(excluded_counts(exclude, users).max(initial=0))
        return batched(users, k, width, answer)
