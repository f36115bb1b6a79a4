"""Tiny recall sources implementing the protocol, for evaluation tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.base import Interactions
from reelhouse.recall.topk import excluded_mask, first_k


def _answer(lists: np.ndarray, scores: np.ndarray, users: np.ndarray, k: int, exclude: sp.csr_matrix | None):
    lists = np.asarray(lists, dtype=np.int64)
    return first_k(lists, scores.astype(np.float32), excluded_mask(exclude, users, lists), k)


class FixedSource:
    """The same ranked list for everybody; remembers what it was fitted on and asked with."""

    def __init__(self, name: str, ranked: list[int]) -> None:
        self.name = name
        self.ranked = np.asarray(ranked, dtype=np.int64)
        self.fitted: list[int] = []  # pairs of each fit
        self.excludes: list[sp.csr_matrix | None] = []

    def fit(self, interactions: Interactions) -> FixedSource:
        self.fitted.append(len(interactions.user))
        return self

    def recommend(self, users, k, exclude=None):
        users = np.asarray(users, dtype=np.int64)
        self.excludes.append(exclude)
        lists = np.broadcast_to(self.ranked, (len(users), len(self.ranked)))
        scores = np.broadcast_to(-np.arange(len(self.ranked), dtype=np.float32), lists.shape)
        return _answer(lists, scores, users, k, exclude)


class OracleSource:
    """Knows the answers: each user's held-out positives, in item order."""

    name = "oracle"

    def __init__(self, positives: sp.csr_matrix) -> None:
        self.positives = sp.csr_matrix(positives)

    def fit(self, interactions: Interactions) -> OracleSource:
        return self

    def recommend(self, users, k, exclude=None):
        users = np.asarray(users, dtype=np.int64)
        width = max(1, int(np.diff(self.positives.indptr)[users].max(initial=0)))
        lists = np.full((len(users), width), -1, dtype=np.int64)
        for row, user in enumerate(users):
            found = self.positives[user].indices
            lists[row, : len(found)] = np.sort(found)
        return _answer(lists, np.zeros(lists.shape), users, k, exclude)


class CountSource:
    """Items by number of training users (most popular)."""

    name = "count"

    def __init__(self) -> None:
        self.counts = np.zeros(0)
        self.fitted: list[int] = []

    def fit(self, interactions: Interactions) -> CountSource:
        self.counts = np.bincount(interactions.item, minlength=interactions.n_items).astype(np.float64)
        self.fitted.append(len(interactions.user))
        return self

    def recommend(self, users, k, exclude=None):
        users = np.asarray(users, dtype=np.int64)
        ranked = np.argsort(-self.counts, kind="stable")[: k + 200]
        lists = np.broadcast_to(ranked, (len(users), len(ranked)))
        return _answer(lists, np.broadcast_to(self.counts[ranked], lists.shape), users, k, exclude)


class FavouriteTopicSource:
    """Popular items of the user's most engaged ``topic`` attribute."""

    name = "favourite"

    def __init__(self) -> None:
        self.user_topic = np.zeros(0, dtype=np.int64)
        self.by_topic: list[np.ndarray] = []
        self.counts = np.zeros(0)

    def fit(self, interactions: Interactions) -> FavouriteTopicSource:
        topics = np.unique(interactions.item_attributes["topic"].astype(str), return_inverse=True)[1]
        self.counts = np.bincount(interactions.item, minlength=interactions.n_items).astype(np.float64)
        per_user = sp.csr_matrix(
            (np.ones(len(interactions.user)), (interactions.user, topics[interactions.item])),
            shape=(interactions.n_users, topics.max() + 1),
        )
        self.user_topic = np.asarray(per_user.argmax(axis=1)).ravel()
        self.has_history = np.diff(per_user.indptr) > 0
        self.by_topic = [
            np.flatnonzero(topics == t)[np.argsort(-self.counts[topics == t], kind="stable")]
            for t in range(topics.max() + 1)
        ]
        return self

    def recommend(self, users, k, exclude=None):
        users = np.asarray(users, dtype=np.int64)
        width = max(len(items) for items in self.by_topic)
        lists = np.full((len(users), width), -1, dtype=np.int64)
        for row, user in enumerate(users):
            if self.has_history[user]:
                items = self.by_topic[self.user_topic[user]]
                lists[row, : len(items)] = items
        scores = np.where(lists >= 0, self.counts[np.maximum(lists, 0)], -np.inf)
        return _answer(lists, scores, users, k, exclude)
