"""Co-visitation: items engaged together are neighbours; users get neighbours of their recent items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reelhouse.recall.covisit import CovisitationSource
from reelhouse.recall.interactions import interactions_from_frame


def interactions(rows):
    log = pd.DataFrame(rows, columns=["user", "video", "w", "t"])
    return interactions_from_frame(log, "user", "video", "w", "t")


def code(data, item):
    return list(data.item_ids).index(item)


# "a" and "b" are engaged by exactly the same users (cosine 1); "c" shares one user with "a";
# "d" is engaged alone. "x" only watched "a".
ROWS = [
    ("u1", "a", 1.0, 10),
    ("u1", "b", 1.0, 11),
    ("u2", "a", 2.0, 10),
    ("u2", "b", 2.0, 12),
    ("u3", "a", 1.0, 10),
    ("u3", "b", 1.0, 13),
    ("u3", "c", 1.0, 14),
    ("u4", "c", 1.0, 10),
    ("u4", "d", 1.0, 10),
    ("u5", "d", 1.0, 10),
    ("x", "a", 1.0, 20),
]


def test_items_always_engaged_together_are_each_others_best_neighbour():
    data = interactions(ROWS[:-1])
    items, scores = CovisitationSource(neighbours=2, recent_items=5).fit(data).neighbours()
    a, b, c = code(data, "a"), code(data, "b"), code(data, "c")
    assert items[a, 0] == b and items[b, 0] == a
    assert scores[a, 0] == pytest.approx(1.0)
    assert items[a, 1] == c  # the weaker, single shared user
    assert a not in items[a]  # never its own neighbour


def test_a_user_gets_the_neighbours_of_what_they_watched_not_what_they_watched():
    data = interactions(ROWS)
    source = CovisitationSource(neighbours=3, recent_items=5).fit(data)
    x = list(data.user_ids).index("x")
    items, scores = source.recommend(np.array([x]), k=3, exclude=data.seen())
    got = [data.item_ids[i] for i in items[0] if i >= 0]
    assert got[0] == "b" and "a" not in got
    assert "d" not in got  # never engaged together with "a"


def test_only_the_latest_items_seed_a_user():
    # y watched "d" long ago and "a" last: with one seed item only "a"'s neighbours count.
    data = interactions(ROWS + [("y", "d", 1.0, 1), ("y", "a", 1.0, 50)])
    source = CovisitationSource(neighbours=3, recent_items=1).fit(data)
    y = list(data.user_ids).index("y")
    got = [data.item_ids[i] for i in source.recommend(np.array([y]), k=5, exclude=data.seen())[0][0] if i >= 0]
    assert got[0] == "b" and "c" in got and "d" not in got


def test_with_a_time_window_only_items_engaged_close_together_co_occur():
    # u1 engaged "p" and "q" an hour apart, u2 engaged "p" and "r" within the same minute.
    data = interactions([("u1", "p", 1.0, 0), ("u1", "q", 1.0, 3600), ("u2", "p", 1.0, 100), ("u2", "r", 1.0, 130)])
    p, q, r = (code(data, i) for i in "pqr")
    whole = CovisitationSource(neighbours=2, recent_items=5).fit(data).neighbours()[0]
    assert set(whole[p]) == {q, r}
    slotted = CovisitationSource(neighbours=2, recent_items=5, window_s=600).fit(data).neighbours()[0]
    assert slotted[p].tolist() == [r, -1]
