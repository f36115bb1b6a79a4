"""What every recall source shares: the interaction matrix it learns from and how it answers.

Users and items are dense integer codes (``0..n_users-1``, ``0..n_items-1``) into the id arrays
of :class:`Interactions`; sources work on codes and the callers map back to ids. A source is
fitted once on the training interactions and then asked for the top ``k`` items of many users
at once, with items to exclude (those a user has already seen) masked out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp


@dataclass
class Interactions:
    """Positive user-item interactions with a strength and the time of the latest one.

    ``weight`` is the implicit-feedback strength (>0; e.g. watch ratio plus like/share boosts);
    ``time_s`` epoch seconds of the pair's latest interaction; one row per (user, item) pair.
    ``item_attributes`` optionally holds per-item columns keyed by item code order (``topic``,
    ``upload_time_s``...), ``item_vectors`` dense embeddings (n_items x dim, float32, rows of
    items without one all zero) with ``has_vector`` marking which rows are real.
    """

    user_ids: np.ndarray  # object/str array, index = user code
    item_ids: np.ndarray  # object/str array, index = item code
    user: np.ndarray  # int32 user code per pair
    item: np.ndarray  # int32 item code per pair
    weight: np.ndarray  # float32 per pair
    time_s: np.ndarray  # float64 epoch seconds per pair
    item_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    item_vectors: np.ndarray | None = None
    has_vector: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self) -> sp.csr_matrix:
        """Users x items, the weights (float32 CSR)."""
        return sp.csr_matrix(
            (self.weight.astype(np.float32), (self.user, self.item)), shape=(self.n_users, self.n_items)
        )

    def seen(self) -> sp.csr_matrix:
        """Users x items, 1 where the user interacted (the mask of items not to recommend again)."""
        m = self.matrix()
        m.data[:] = 1
        return m


class RecallSource(Protocol):
    """A candidate generator. ``name`` is also its quota key in ``recall.quotas``."""

    name: str

    def fit(self, interactions: Interactions) -> RecallSource: ...

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item codes and scores per user code (rows of ``users``), best first.

        Returns ``(items, scores)``, both ``len(users) x k``; a row with fewer than ``k`` answers
        is padded with item ``-1`` and score ``-inf``. ``exclude`` (users x items, the full user
        code space) masks items a user must not get.
        """
        ...
