"""Co-visitation's shrinkage: x_i·x_j / (|x_i| |x_j| + shrink), so thin evidence scores less."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from reelhouse.recall.covisit import CovisitationSource, recommend_from_graph
from reelhouse.recall.interactions import interactions_from_frame


def interactions(rows):
    return interactions_from_frame(pd.DataFrame(rows, columns=["user", "item", "w"]), "user", "item", "w")


def random_log(seed: int = 4):
    # Weighted pairs (weights 0.5..3) so the cosine is not just a count of shared users.
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{i:02d}", float(rng.choice([0.5, 1.0, 2.0, 3.0])))
        for u in range(25)
        for i in rng.choice(15, size=int(rng.integers(1, 6)), replace=False)
    ]
    return interactions(rows)


def expected_similarity(data, shrink: float) -> np.ndarray:
    """The formula computed densely: x_i·x_j / (|x_i||x_j| + shrink) over the users x items weights,
    with the diagonal at 0 (an item is not its own neighbour)."""
    x = data.matrix().toarray().astype(np.float64)
    dots = x.T @ x
    norms = np.linalg.norm(x, axis=0)
    denominator = np.outer(norms, norms) + shrink
    similar = np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
    np.fill_diagonal(similar, 0.0)
    return similar


@pytest.mark.parametrize("shrink", [0.0, 2.5, 40.0])
def test_the_graph_is_the_shrunk_cosine_of_every_pair(shrink):
    # With every neighbour kept, the graph must equal the formula of the module docstring cell
    # by cell (shrink 0: the plain cosine). Blocks of 4 items check the blocked computation too.
    data = random_log()
    source = CovisitationSource(neighbours=data.n_items, recent_items=3, block_items=4, shrink=shrink).fit(data)
    assert np.allclose(source.graph.toarray(), expected_similarity(data, shrink), atol=1e-6)


def test_shrink_zero_gives_cosine_one_to_items_with_proportional_columns():
    # a and b are engaged by the same users with weights in the same proportion (b = 2a):
    # the plain cosine of parallel vectors is exactly 1.
    data = interactions([("u1", "a", 1.0), ("u1", "b", 2.0), ("u2", "a", 3.0), ("u2", "b", 6.0), ("u3", "c", 1.0)])
    items, scores = CovisitationSource(neighbours=2, recent_items=1).fit(data).neighbours()
    a, b = list(data.item_ids).index("a"), list(data.item_ids).index("b")
    assert items[a, 0] == b and scores[a, 0] == pytest.approx(1.0)


# Two pairs, both with cosine 1: "lone1"/"lone2" engaged together by a single user, "pop1"/"pop2"
# by the same 6 users. Unit weights, so x_i·x_j is the number of shared users and |x_i| the
# square root of the item's users: lone's shrunk score is 1 / (1 + s), pop's 6 / (6 + s).
PAIRS = [("solo", "lone1", 1.0), ("solo", "lone2", 1.0)] + [
    (f"p{u}", item, 1.0) for u in range(6) for item in ("pop1", "pop2")
]


def test_shrinkage_discounts_a_pair_seen_by_one_user():
    data = interactions(PAIRS)
    ids = list(data.item_ids)
    lone1, pop1 = ids.index("lone1"), ids.index("pop1")
    plain = CovisitationSource(neighbours=3, recent_items=2, shrink=0.0).fit(data).neighbours()[1]
    shrunk = CovisitationSource(neighbours=3, recent_items=2, shrink=4.0).fit(data).neighbours()[1]
    assert plain[lone1, 0] == pytest.approx(1.0) and plain[pop1, 0] == pytest.approx(1.0)
    assert shrunk[lone1, 0] == pytest.approx(1 / (1 + 4.0))
    assert shrunk[pop1, 0] == pytest.approx(6 / (6 + 4.0))


def test_with_shrinkage_the_well_supported_pair_ranks_first_for_a_user_seeded_by_both():
    # A user whose latest items are lone1 and pop1 gets lone2 (via lone1) and pop2 (via pop1).
    # Plain cosine scores both 1 and the tie goes to the lower item code, lone2 ("l" < "p"):
    # the one-user coincidence comes first. With shrink 4, pop2 (0.6) beats lone2 (0.2): the
    # reason the shrinkage exists.
    data = interactions(PAIRS)
    ids = list(data.item_ids)
    lone1, lone2, pop1, pop2 = (ids.index(name) for name in ("lone1", "lone2", "pop1", "pop2"))
    # The user is not part of the fit (their own engagements would change the columns); their
    # seeds are given to recommend_from_graph directly: one row, 1 at lone1 and pop1.
    seeds = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [lone1, pop1])), shape=(1, data.n_items))
    for shrink, expected in ((0.0, [lone2, pop2]), (4.0, [pop2, lone2])):
        graph = CovisitationSource(neighbours=3, recent_items=2, shrink=shrink).fit(data).graph
        items, scores = recommend_from_graph(seeds, graph, np.array([0]), 2, None, width=6)
        assert items[0].tolist() == expected
        if shrink:
            assert scores[0].tolist() == pytest.approx([6 / 10, 1 / 5])


@pytest.mark.parametrize("shrink", [0.0, 10.0])
def test_no_item_is_its_own_neighbour(shrink):
    # x_i·x_i / (|x_i|² + shrink) is the largest value of row i; it must be dropped, not ranked first.
    data = random_log(seed=9)
    items, _ = CovisitationSource(neighbours=5, recent_items=3, shrink=shrink).fit(data).neighbours()
    rows = np.arange(data.n_items)[:, None]
    assert not np.any(items == rows)
    # ... yet every item co-engaged with another one has a neighbour.
    co_engaged = (expected_similarity(data, shrink) > 0).any(axis=1)
    assert co_engaged.sum() > data.n_items // 2
    assert np.array_equal(items[:, 0] >= 0, co_engaged)


def test_a_user_is_never_recommended_a_seen_item_even_with_shrinkage():
    data = random_log(seed=5)
    source = CovisitationSource(neighbours=5, recent_items=3, shrink=10.0).fit(data)
    seen = data.seen()
    users = np.arange(data.n_users)
    items, _ = source.recommend(users, k=5, exclude=seen)
    hit = np.asarray(seen[users[:, None], np.maximum(items, 0)].todense()).astype(bool) & (items >= 0)
    assert not hit.any()
