"""Evaluation data from a log's clean rows: training interactions, the seen mask and held-out positives.

For evaluation, a row is a positive when its rating is above 0 (or at least ``min_rating``);
without a rating column every row is. Training pairs weigh the summed ratings (1 per row
without ratings). Held-out pairs the user already had in ``train`` are not held-out positives:
seen items are never recommended, so they could not be found.

The evaluation data record whether the split is *temporal* (every held-out row at or after
every training row): the tuner and the pipeline's ranker then hold out the latest pairs, and
otherwise a per-user random share, so what they learn on is drawn the way the test is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from reelhouse.errors import InteractionLogError
from reelhouse.evaluation.item_features import with_item_features
from reelhouse.evaluation.logfile import epoch_seconds
from reelhouse.evaluation.protocol import EvaluationData
from reelhouse.recall.base import Interactions
from reelhouse.recall.interactions import interactions_from_frame
from reelhouse.recall.metrics import positives_matrix


def with_extra_ids(interactions: Interactions, users: np.ndarray, items: np.ndarray) -> Interactions:
    """The same pairs in a code space that also holds ``users`` and ``items`` (new ids appended, sorted).

    Attributes of the new items are unknown (None / NaN), their vectors missing.
    """
    new_users = np.setdiff1d(np.asarray(users, dtype=object).astype(str), interactions.user_ids.astype(str))
    new_items = np.setdiff1d(np.asarray(items, dtype=object).astype(str), interactions.item_ids.astype(str))
    attributes = {}
    for name, values in interactions.item_attributes.items():
        fill = np.nan if np.issubdtype(values.dtype, np.floating) else None
        pad = np.full(len(new_items), fill, dtype=values.dtype if fill is not None else object)
        attributes[name] = np.concatenate([values, pad])
    vectors, has_vector = interactions.item_vectors, interactions.has_vector
    if vectors is not None:
        vectors = np.vstack([vectors, np.zeros((len(new_items), vectors.shape[1]), dtype=vectors.dtype)])
        has_vector = np.concatenate([has_vector, np.zeros(len(new_items), dtype=bool)])
    return Interactions(
        user_ids=np.concatenate([interactions.user_ids, new_users.astype(object)]),
        item_ids=np.concatenate([interactions.item_ids, new_items.astype(object)]),
        user=interactions.user,
        item=interactions.item,
        weight=interactions.weight,
        time_s=interactions.time_s,
        item_attributes=attributes,
        item_vectors=vectors,
        has_vector=has_vector,
    )


def _codes(ids: np.ndarray, values: pd.Series | np.ndarray) -> np.ndarray:
    index = pd.Index(ids.astype(str))
    return index.get_indexer(np.asarray(values, dtype=object).astype(str)).astype(np.int64)


def held_out_positives(
    train: Interactions, users: pd.Series | np.ndarray, items: pd.Series | np.ndarray, seen: sp.csr_matrix
) -> sp.csr_matrix:
    """Binary users x items of held-out (user id, item id) pairs, minus the pairs ``seen`` in training.

    Every id must be in ``train``'s code space (see :func:`with_extra_ids`).
    """
    user, item = _codes(train.user_ids, users), _codes(train.item_ids, items)
    if (user < 0).any() or (item < 0).any():
        raise ValueError("held-out ids outside the training code space; extend it with with_extra_ids first")
    matrix = positives_matrix(user, item, train.n_users, train.n_items)
    matrix = (matrix - matrix.multiply(seen)).tocsr()
    matrix.eliminate_zeros()
    return matrix


def evaluation_data(
    rows: pa.Table,
    item_features: pa.Table | None = None,
    vector_col: str | None = None,
    min_rating: float | None = None,
) -> EvaluationData:
    """Train interactions, seen mask and held-out positives of clean rows (see the module docstring).

    The code space holds every user and item of the log (and of ``item_features``), so held-out
    users without training history and items nobody trained on are still evaluated.
    """
    df = rows.select(["user_id", "item_id", "rating", "split"]).to_pandas()
    times = rows.column("event_time")
    has_time = times.null_count < rows.num_rows
    df["time_s"] = epoch_seconds(times) if has_time else 0.0
    has_rating = rows.column("rating").null_count < rows.num_rows
    df["weight"] = df["rating"].astype(np.float64) if has_rating else 1.0
    positive = (df["weight"] >= min_rating) if min_rating is not None else (df["weight"] > 0)

    train_rows = df[df["split"] == "train"]
    train = interactions_from_frame(train_rows[positive[train_rows.index]], "user_id", "item_id", "weight", "time_s")
    all_items = df["item_id"].unique()
    if item_features is not None:
        all_items = np.union1d(
            all_items.astype(str), item_features.column("item_id").to_numpy(zero_copy_only=False).astype(str)
        )
    train = with_extra_ids(train, df["user_id"].unique(), all_items)
    if item_features is not None:
        train = with_item_features(train, item_features, vector_col)

    seen = positives_matrix(
        _codes(train.user_ids, train_rows["user_id"]),
        _codes(train.item_ids, train_rows["item_id"]),
        train.n_users,
        train.n_items,
    )

    def held_out(split: str) -> sp.csr_matrix | None:
        part = df[(df["split"] == split) & positive]
        return held_out_positives(train, part["user_id"], part["item_id"], seen) if len(part) else None

    test = held_out("test")
    if test is None or test.nnz == 0:
        raise InteractionLogError(
            "no held-out positives: the log has no `test` rows that are positives and new to their user; "
            "check the split column or the rating threshold"
        )
    held_times = df.loc[df["split"] != "train", "time_s"]
    latest_train = float(train_rows["time_s"].max()) if len(train_rows) else -np.inf
    temporal = bool(has_time) and len(held_times) > 0 and float(held_times.min()) >= latest_train
    return EvaluationData(
        train=train, test=test, valid=held_out("valid"), seen=seen, has_time=bool(has_time), temporal=temporal
    )
