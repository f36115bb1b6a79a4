"""Content recall: what a user's history says about *what* they like, not *who* is similar.

:class:`TopicAffinitySource` mixes the most popular videos of the user's topics in proportion
to the user's engagement with each topic. :class:`EmbeddingSource` looks up the videos whose
embedding (from an upstream content model) is nearest the mean of the user's engaged videos;
being independent of interactions, it can surface videos nobody has engaged with yet.
:class:`ContentNeighboursSource` is the item-to-item form: the videos whose content is nearest
each of the user's latest engaged videos, so a user of two tastes gets neighbours of both
rather than of their average.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reelhouse.errors import ReelhouseError
from reelhouse.recall.base import Interactions
from reelhouse.recall.covisit import latest_items, recommend_from_graph
from reelhouse.recall.popularity import decayed_popularity
from reelhouse.recall.topk import (
    batched,
    empty,
    excluded_counts,
    excluded_mask,
    first_k,
    mask_columns,
    top_k_dense,
)

log = logging.getLogger(__name__)


class TopicAffinitySource:
    """Score of a video = the user's share of engagement in its topic x its popularity relative to
    the topic's most popular video (decayed with ``half_life_h`` from ``as_of_s``, as popularity).

    A user who only watches one topic gets that topic's most popular videos they have not seen;
    a 70/30 user gets both topics' heads interleaved by those products. Needs the ``topic``
    item attribute; videos without a topic are never recommended.
    """

    name = "topic"

    def __init__(self, half_life_h: float, as_of_s: float | None = None) -> None:
        self.half_life_h = half_life_h
        self.as_of_s = as_of_s
        self.topics = np.zeros(0, dtype=object)
        self.user_share = sp.csr_matrix((0, 0))
        self.ranked = np.zeros(0, dtype=np.int64)  # item codes grouped by topic, best first within each
        self.offsets = np.zeros(1, dtype=np.int64)  # topic t's items: ranked[offsets[t]:offsets[t + 1]]
        self.relative = np.zeros(0)
        self.item_topic = np.zeros(0, dtype=np.int64)

    def fit(self, interactions: Interactions) -> TopicAffinitySource:
        topic = interactions.item_attributes.get("topic")
        if topic is None:
            raise ReelhouseError("the topic source needs item topics: pass `items` (dim_videos) to the interactions")
        codes, self.topics = pd.factorize(pd.Series(topic, dtype=object), sort=True)
        n_topics = len(self.topics)
        popularity = decayed_popularity(interactions, self.half_life_h, self.as_of_s)
        candidates = np.flatnonzero((codes >= 0) & (popularity > 0))
        order = candidates[np.lexsort((candidates, -popularity[candidates], codes[candidates]))]
        self.ranked = order
        self.offsets = np.searchsorted(codes[order], np.arange(n_topics + 1), side="left").astype(np.int64)
        best = np.zeros(n_topics)
        np.maximum.at(best, codes[order], popularity[order])
        self.relative = np.zeros(interactions.n_items)
        self.relative[order] = popularity[order] / best[codes[order]]
        self.item_topic = codes
        with_topic = codes[interactions.item] >= 0
        per_topic = sp.csr_matrix(
            (
                interactions.weight[with_topic].astype(np.float64),
                (interactions.user[with_topic], codes[interactions.item[with_topic]]),
            ),
            shape=(interactions.n_users, n_topics),
        )
        totals = np.asarray(per_topic.sum(axis=1)).ravel()
        inverse = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        self.user_share = (sp.diags(inverse) @ per_topic).tocsr()
        log.info("topic affinity: %d topics, %d ranked videos", n_topics, len(order))
        return self

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        n_topics = len(self.topics)
        if n_topics == 0:
            return empty(len(users), k)
        sizes = np.diff(self.offsets)

        def heads(depth: int) -> np.ndarray:
            # Each topic's ``depth`` best items side by side: the columns every user of the batch scores.
            starts = self.offsets[:-1]
            return np.concatenate([self.ranked[s : s + min(depth, n)] for s, n in zip(starts, sizes, strict=True)])

        def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            columns = heads(k + int(excluded_counts(exclude, batch).max(initial=0)))
            share = self.user_share[batch].toarray()
            block = (share[:, self.item_topic[columns]] * self.relative[columns]).astype(np.float32)
            block[block <= 0] = -np.inf
            block[mask_columns(exclude, batch, columns)] = -np.inf
            picks, scores = top_k_dense(block, k)
            return np.where(picks >= 0, columns[np.maximum(picks, 0)], -1), scores

        width = len(heads(k + int(excluded_counts(exclude, users).max(initial=0))))
        return batched(users, k, max(1, width), answer)


class EmbeddingSource:
    """Nearest videos to a user's taste vector by inner product of L2-normalised embeddings (cosine).

    The user vector is the weight-averaged normalised vectors of their engaged videos (videos
    without a vector do not count; a user with none gets nothing). Below ``hnsw_threshold``
    videos the index is exact (``IndexFlatIP``); above it, HNSW (``IndexHNSWFlat``, ``hnsw_m``
    links, ``ef_construction``/``ef_search`` beam widths) keeps a query at a few milliseconds
    past a million videos. Videos without a vector are not in the index, so never recommended.
    """

    name = "embedding"

    def __init__(
        self,
        neighbours: int = 50,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 40,
    ) -> None:
        self.n_neighbours = neighbours
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.index = None
        self.index_items = np.zeros(0, dtype=np.int64)  # index position -> item code
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)
        self.has_user = np.zeros(0, dtype=bool)

    @property
    def exact(self) -> bool:
        return len(self.index_items) <= self.hnsw_threshold

    def fit(self, interactions: Interactions) -> EmbeddingSource:
        import faiss

        if interactions.item_vectors is None or interactions.has_vector is None or not interactions.has_vector.any():
            raise ReelhouseError("the embedding source needs item vectors: set recall.embeddings_path")
        has = interactions.has_vector
        vectors = interactions.item_vectors.astype(np.float32, copy=True)
        vectors[~has] = 0.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        self.vectors = vectors
        self.index_items = np.flatnonzero(has).astype(np.int64)
        dim = vectors.shape[1]
        if self.exact:
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        index.add(np.ascontiguousarray(vectors[self.index_items]))
        self.index = index
        # The weighted sum has the weighted mean's direction; videos without a vector add zeros.
        users = np.asarray(interactions.matrix().astype(np.float64) @ vectors.astype(np.float64))
        user_norms = np.linalg.norm(users, axis=1, keepdims=True)
        self.has_user = user_norms.ravel() > 0
        users = np.divide(users, user_norms, out=np.zeros_like(users), where=user_norms > 0)
        self.user_vectors = users.astype(np.float32)
        log.info(
            "embeddings: %s index of %d videos (dim %d), %d users with a taste vector",
            "exact" if self.exact else "HNSW",
            len(self.index_items),
            dim,
            int(self.has_user.sum()),
        )
        return self

    def _search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Item codes and scores of the ``count`` nearest indexed videos per query (``-1`` padded)."""
        count = min(count, len(self.index_items))
        if count <= 0 or len(queries) == 0:
            return empty(len(queries), max(count, 0))
        if not self.exact:
            self.index.hnsw.efSearch = max(self.ef_search, count)
        scores, positions = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
        items = np.where(positions >= 0, self.index_items[np.maximum(positions, 0)], -1)
        return items, np.where(positions >= 0, scores, -np.inf).astype(np.float32)

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)

        def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out_items, out_scores = empty(len(batch), k)
            known = self.has_user[batch]
            if self.index is None or not known.any():
                return out_items, out_scores
            rows = batch[known]
            # Over-fetch by the exclusions so k remain after masking what the user has seen.
            fetch = k + int(excluded_counts(exclude, rows).max(initial=0))
            items, scores = self._search(self.user_vectors[rows], fetch)
            out_items[known], out_scores[known] = first_k(items, scores, excluded_mask(exclude, rows, items), k)
            return out_items, out_scores

        width = k + int(excluded_counts(exclude, users).max(initial=0))
        return batched(users, k, width, answer)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """Per item code, the ``neighbours`` nearest other videos and their cosines, best first.

        Rows of videos without a vector are all ``-1``.
        """
        n_items = len(self.vectors)
        items, scores = empty(n_items, self.n_neighbours)
        step = 16_384
        for start in range(0, len(self.index_items), step):
            codes = self.index_items[start : start + step]
            found, cosines = self._search(self.vectors[codes], self.n_neighbours + 1)
            items[codes], scores[codes] = first_k(found, cosines, found == codes[:, None], self.n_neighbours)
        return items, scores


class ContentNeighboursSource:
    """Per recent engaged video, its ``neighbours`` nearest videos by embedding cosine; a
    candidate's score is its summed cosine to the user's ``recent_items`` latest videos.

    Negative cosines are not kept (an unrelated video is no evidence). Videos without a vector
    neither seed nor get recommended.
    """

    name = "content"

    def __init__(self, neighbours: int, recent_items: int) -> None:
        self.n_neighbours = neighbours
        self.recent_items = recent_items
        self.graph = sp.csr_matrix((0, 0), dtype=np.float32)
        self.seeds = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, interactions: Interactions) -> ContentNeighboursSource:
        items, scores = EmbeddingSource(neighbours=self.n_neighbours).fit(interactions).neighbours()
        kept = (items >= 0) & (scores > 0)
        n_items = interactions.n_items
        self.graph = sp.csr_matrix(
            (scores[kept], (np.nonzero(kept)[0], items[kept])), shape=(n_items, n_items), dtype=np.float32
        )
        self.seeds = latest_items(interactions, self.recent_items)
        log.info("content neighbours: %d items, %d links", n_items, self.graph.nnz)
        return self

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return recommend_from_graph(self.seeds, self.graph, users, k, exclude, self.recent_items * self.n_neighbours)
