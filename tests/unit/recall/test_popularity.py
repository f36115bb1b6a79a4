"""Popularity: decayed engagement, the same list for everybody minus what they have seen."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reelhouse.recall.interactions import interactions_from_frame
from reelhouse.recall.popularity import PopularitySource

NOW = 1_000_000.0
HOUR = 3600.0


def interactions():
    # "old": weight 8, last engaged 72 h ago; "new": weight 2 right now; "mid": weight 1, 24 h ago.
    # With a 24 h half-life: old = 8 / 2**3 = 1, new = 2, mid = 0.5.
    log = pd.DataFrame(
        {
            "user": ["u1", "u2", "u3", "u4"],
            "video": ["old", "new", "mid", "new"],
            "w": [8.0, 1.0, 1.0, 1.0],
            "t": [NOW - 72 * HOUR, NOW, NOW - 24 * HOUR, NOW],
        }
    )
    return interactions_from_frame(log, "user", "video", "w", "t")


def names(data, codes):
    return [data.item_ids[c] if c >= 0 else None for c in codes]


def test_a_recent_item_beats_an_older_heavier_one():
    data = interactions()
    source = PopularitySource(half_life_h=24, as_of_s=NOW).fit(data)
    items, scores = source.top(3)
    assert names(data, items) == ["new", "old", "mid"]
    assert scores.tolist() == [2.0, 1.0, 0.5]
    # Without decay to speak of, sheer weight wins.
    slow = PopularitySource(half_life_h=1e9, as_of_s=NOW).fit(data)
    assert names(data, slow.top(1)[0]) == ["old"]


def test_everybody_gets_the_same_list_minus_what_they_have_seen():
    data = interactions()
    source = PopularitySource(half_life_h=24, as_of_s=NOW).fit(data)
    users = np.arange(data.n_users)
    items, scores = source.recommend(users, k=3, exclude=data.seen())
    by_user = {data.user_ids[u]: names(data, row) for u, row in zip(users, items)}
    assert by_user["u1"] == ["new", "mid", None]  # u1 saw "old"; only two left, padded
    assert by_user["u2"] == ["old", "mid", None]
    assert np.isneginf(scores[0, 2])
    # Without a mask, the head of the ranking for all.
    assert names(data, source.recommend(np.array([0]), k=2)[0][0]) == ["new", "old"]
