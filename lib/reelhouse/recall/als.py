"""Collaborative filtering recall: implicit-feedback ALS (Spark MLlib) on the pair weights.

Spark fits the factors (the expensive, distributed part); the factors then come to the driver
and ``recommend`` scores batches of users against every item with one numpy matrix product.
Spark's ``recommendForAllUsers`` would also work but re-shuffles the factors per call and
cannot mask each user's seen items before taking the top k.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reelhouse.recall.base import Interactions
from reelhouse.recall.topk import batched, empty, mask_dense, top_k_dense

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


class AlsSource:
    """``ALS(implicitPrefs=True)`` with the given rank, regularisation, confidence ``alpha``, iterations, seed.

    Users and items absent from the training pairs have no factors: such a user gets nothing
    (all ``-1``; cold start is popularity's job) and such an item is never recommended.
    ``blocks`` partitions users and items for the solver (default: the cluster's cores, where
    MLlib's fixed 10 would leave a small cluster scheduling idle tasks).
    """

    name = "als"

    def __init__(
        self,
        spark: SparkSession,
        rank: int,
        reg: float,
        alpha: float,
        max_iter: int,
        seed: int = 7,
        blocks: int | None = None,
    ) -> None:
        self.spark = spark
        self.rank = rank
        self.reg = reg
        self.alpha = alpha
        self.max_iter = max_iter
        self.seed = seed
        self.blocks = blocks
        self.user_factors = np.zeros((0, rank), dtype=np.float32)
        self.item_factors = np.zeros((0, rank), dtype=np.float32)
        self.has_user = np.zeros(0, dtype=bool)
        self.has_item = np.zeros(0, dtype=bool)

    def fit(self, interactions: Interactions) -> AlsSource:
        from pyspark.ml.recommendation import ALS

        self.user_factors = np.zeros((interactions.n_users, self.rank), dtype=np.float32)
        self.item_factors = np.zeros((interactions.n_items, self.rank), dtype=np.float32)
        self.has_user = np.zeros(interactions.n_users, dtype=bool)
        self.has_item = np.zeros(interactions.n_items, dtype=bool)
        if interactions.weight.size == 0:
            return self
        pairs = self.spark.createDataFrame(
            pd.DataFrame({"user": interactions.user, "item": interactions.item, "weight": interactions.weight})
        )
        blocks = self.blocks or max(1, self.spark.sparkContext.defaultParallelism)
        als = ALS(
            rank=self.rank,
            maxIter=self.max_iter,
            regParam=self.reg,
            alpha=self.alpha,
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="weight",
            coldStartStrategy="drop",
            seed=self.seed,
            numUserBlocks=blocks,
            numItemBlocks=blocks,
        )
        model = als.fit(pairs)
        self._load(model.userFactors, self.user_factors, self.has_user)
        self._load(model.itemFactors, self.item_factors, self.has_item)
        log.info("ALS rank %d: factors for %d users, %d items", self.rank, self.has_user.sum(), self.has_item.sum())
        return self

    @staticmethod
    def _load(frame, factors: np.ndarray, present: np.ndarray) -> None:
        table = frame.toArrow()
        ids = table.column("id").to_numpy()
        if ids.size:
            vectors = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            factors[ids] = vectors.reshape(len(ids), factors.shape[1])
            present[ids] = True

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)

        def answer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            known = self.has_user[batch]
            items, scores = empty(len(batch), k)
            if not known.any():
                return items, scores
            rows = batch[known]
            block = self.user_factors[rows] @ self.item_factors.T
            block[:, ~self.has_item] = -np.inf
            mask_dense(block, exclude, rows)
            items[known], scores[known] = top_k_dense(block, k)
            return items, scores

        return batched(users, k, max(1, len(self.item_factors)), answer)
