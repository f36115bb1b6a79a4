"""ALS on local Spark: two blocks of users with disjoint tastes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reelhouse.recall.als import AlsSource
from reelhouse.recall.interactions import interactions_from_frame

pytestmark = pytest.mark.integration


def test_users_get_items_from_their_own_block(spark):
    # Users 0-9 engage with items 0-9, users 10-19 with items 10-19, each missing one item of
    # their block (user u misses item u). The only unseen item the blocks' factors favour for a
    # user is therefore their held-out one; everything else unseen is the other block's.
    rows = [(f"u{u:02d}", f"i{i:02d}") for u in range(20) for i in range(20) if i // 10 == u // 10 and i != u]
    data = interactions_from_frame(pd.DataFrame(rows, columns=["user", "item"]), "user", "item")
    source = AlsSource(spark, rank=4, reg=0.05, alpha=10.0, max_iter=5, seed=7).fit(data)
    users = np.arange(data.n_users)
    items, scores = source.recommend(users, k=3, exclude=data.seen())
    user_block = np.array([int(u[1:]) // 10 for u in data.user_ids])
    top = np.array([int(data.item_ids[i][1:]) for i in items[:, 0]])
    assert (top // 10 == user_block).all()
    assert (top == np.array([int(u[1:]) for u in data.user_ids])).all()  # exactly the held-out item
    assert (scores[:, 0] > scores[:, 1]).all()


def test_users_unseen_in_training_get_nothing(spark):
    data = interactions_from_frame(pd.DataFrame({"u": ["a", "b"], "i": ["x", "y"]}), "u", "i", extra_items=["z"])
    source = AlsSource(spark, rank=2, reg=0.1, alpha=1.0, max_iter=2).fit(data)
    assert not source.has_item[2]  # "z": no interactions, no factors, never recommended
    assert source.recommend(np.array([0, 1]), k=3, exclude=data.seen())[0][:, 1:].tolist() == [[-1, -1], [-1, -1]]
    source.has_user[1] = False  # as for a user added after training
    assert source.recommend(np.array([1]), k=2)[0].tolist() == [[-1, -1]]
