"""Item-to-item recall from co-visitation: "people who engaged with this also engaged with ...".

Two items are similar when the same visits engaged with both: the shrunk cosine of their
columns in the visits x items weight matrix, ``x_i·x_j / (|x_i| |x_j| + shrink)``. The cosine
keeps sheer popularity from making an item everybody's neighbour; the shrinkage keeps pairs
that one or two visits share from scoring like strong evidence (plain cosine gives two items
engaged once, by the same user, the perfect score 1, and on a sparse log such pairs crowd out
every real neighbour — co-visitation then lost to popularity). A *visit* is a user's whole lookback by default; with ``window_s`` it is one user's
engagements whose latest time falls in the same ``window_s``-long slot of time, so only items
engaged close together co-occur (closer to "watched in the same session").

Only each item's ``neighbours`` best neighbours are kept. The similarity is computed in blocks
of items, so memory holds one block of ``X^T X`` at a time, never the full items x items matrix.
A user's candidates are the summed neighbour scores of their ``recent_items`` latest items.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reelhouse.recall.base import Interactions
from reelhouse.recall.topk import batched, drop_excluded, empty, top_k_sparse

log = logging.getLogger(__name__)


def latest_items(interactions: Interactions, count: int) -> sp.csr_matrix:
    """Users x items, 1 at each user's ``count`` most recently engaged items (ties: heavier first)."""
    order = np.lexsort((-interactions.weight, -interactions.time_s, interactions.user))
    users = interactions.user[order]
    rank = np.arange(len(order)) - np.searchsorted(users, users, side="left")
    keep = order[rank < count]
    return sp.csr_matrix(
        (np.ones(len(keep), dtype=np.float32), (interactions.user[keep], interactions.item[keep])),
        shape=(interactions.n_users, interactions.n_items),
    )


class CovisitationSource:
    """Shrunk-cosine co-visitation, ``neighbours`` kept per item, seeded by a user's ``recent_items`` latest items."""

    name = "covisit"

    def __init__(
        self,
        neighbours: int,
        recent_items: int,
        window_s: float | None = None,
        block_items: int = 2048,
        shrink: float = 0.0,
    ) -> None:
        self.n_neighbours = neighbours
        self.shrink = shrink
        self.recent_items = recent_items
        self.window_s = window_s
        self.block_items = block_items
        self.neighbour_items, self.neighbour_scores = empty(0, neighbours)
        self.graph = sp.csr_matrix((0, 0), dtype=np.float32)
        self.seeds = sp.csr_matrix((0, 0), dtype=np.float32)

    def _visits(self, interactions: Interactions) -> sp.csr_matrix:
        if self.window_s is None:
            return interactions.matrix()
        slot = np.floor(interactions.time_s / self.window_s).astype(np.int64)
        visit, _ = pd.factorize(pd.MultiIndex.from_arrays([interactions.user, slot]))
        return sp.csr_matrix(
            (interactions.weight.astype(np.float32), (visit, interactions.item)),
            shape=(int(visit.max(initial=-1)) + 1, interactions.n_items),
        )

    def fit(self, interactions: Interactions) -> CovisitationSource:
        n_items = interactions.n_items
        visits = self._visits(interactions)
        norms = np.sqrt(np.asarray(visits.multiply(visits).sum(axis=0)).ravel()).astype(np.float64)
        visits = visits.astype(np.float64).tocsr()
        by_item = visits.T.tocsr()
        items, scores = empty(n_items, self.n_neighbours)
        for start in range(0, n_items, self.block_items):
            stop = min(n_items, start + self.block_items)
            similar = (by_item[start:stop] @ visits).tocsr()
            rows = np.repeat(np.arange(start, stop), np.diff(similar.indptr))
            denominator = norms[rows] * norms[similar.indices] + self.shrink
            similar.data = np.divide(similar.data, denominator, out=np.zeros_like(similar.data), where=denominator > 0)
            similar.data[similar.indices == rows] = 0.0  # an item is not its own neighbour
            similar.eliminate_zeros()
            items[start:stop], scores[start:stop] = top_k_sparse(similar.astype(np.float32), self.n_neighbours)
        self.neighbour_items, self.neighbour_scores = items, scores
        kept = items >= 0
        self.graph = sp.csr_matrix(
            (scores[kept], (np.nonzero(kept)[0], items[kept])), shape=(n_items, n_items), dtype=np.float32
        )
        self.seeds = latest_items(interactions, self.recent_items)
        log.info("co-visitation: %d items, %d neighbour links", n_items, self.graph.nnz)
        return self

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """Per item code, its neighbours' codes and cosine scores, best first (``n_items x neighbours``)."""
        return self.neighbour_items, self.neighbour_scores

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return recommend_from_graph(self.seeds, self.graph, users, k, exclude, self.recent_items * self.n_neighbours)


def recommend_from_graph(
    seeds: sp.csr_matrix, graph: sp.csr_matrix, users: np.ndarray, k: int, exclude: sp.csr_matrix | None, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of each user's seed items' summed neighbour scores (``seeds`` users x items,
    ``graph`` items x items); ``width`` bounds a user's candidates (seeds x neighbours)."""
    users = np.asarray(users, dtype=np.int64)
    if seeds.shape[0] == 0:
        return empty(len(users), k)

    def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        candidates = (seeds[batch] @ graph).tocsr()
        return top_k_sparse(drop_excluded(candidates, batch, exclude), k)

    return batched(users, k, max(1, width), answer)
