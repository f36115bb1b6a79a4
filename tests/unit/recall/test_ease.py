"""EASE: the closed form against a direct solve and hand-derived cases; the item cap, masks and padding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from reelhouse.recall.base import Interactions
from reelhouse.recall.ease import EaseSource, ease_weights
from reelhouse.recall.interactions import interactions_from_frame


def interactions(rows, extra_users=()):
    """Interactions of (user, item[, weight]) rows; ``extra_users`` join the user space without pairs."""
    frame = pd.DataFrame(rows, columns=["user", "item", "w"][: len(rows[0])])
    data = interactions_from_frame(frame, "user", "item", "w" if "w" in frame else None)
    if extra_users:
        data = dataclasses.replace(
            data, user_ids=np.concatenate([data.user_ids, np.asarray(extra_users, dtype=object)])
        )
    return data


def code(ids, name):
    return list(ids).index(name)


def direct_ease(x: np.ndarray, reg: float) -> np.ndarray:
    """EASE column by column, straight from its definition: column j regresses x_j on the *other*
    columns with ridge ``reg`` (that is what the constraint diag(B) = 0 means), so
    b_{-j} = (X_{-j}ᵀ X_{-j} + λI)⁻¹ X_{-j}ᵀ x_j and b_jj = 0."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        xo = x[:, others]
        b[others, j] = np.linalg.solve(xo.T @ xo + reg * np.eye(n - 1), xo.T @ x[:, j])
    return b


def test_the_closed_form_equals_the_constrained_least_squares_solve():
    # Steck's closed form B = -P / diag(P) is the Lagrangian solution of the constrained ridge
    # problem; solving each column's ridge regression on the other columns must give the same B.
    rng = np.random.default_rng(11)
    x = (rng.random((40, 7)) < 0.35).astype(np.float64)
    for reg in (0.5, 3.0, 50.0):
        got = ease_weights(x.T @ x, reg)
        assert np.allclose(got, direct_ease(x, reg), atol=1e-10)
        assert np.all(np.diag(got) == 0.0)


def test_ease_weights_does_not_modify_the_gram_matrix():
    # The caller's Gram matrix is reused (e.g. across a tuning grid); adding λ in place would corrupt it.
    gram = np.array([[3.0, 2.0], [2.0, 4.0]])
    before = gram.copy()
    ease_weights(gram, 10.0)
    assert np.array_equal(gram, before)


def test_two_items_always_engaged_together_recommend_each_other():
    # a and b are engaged by the same 3 users; only_a also engaged a; c is engaged by 2 others.
    # Gram (a, b, c) = [[4, 3, 0], [3, 3, 0], [0, 0, 2]]; with λ = 1 the (a, b) block of
    # G + λI is [[5, 3], [3, 4]] (det 11), so P = 1/11 [[4, -3], [-3, 5]] there and
    # B_ab = -P_ab / P_bb = 3/5, B_ba = -P_ba / P_aa = 3/4. P is block-diagonal, so every weight
    # between c and a or b is 0: nobody engaged c together with them.
    rows = [(u, "a") for u in ("u1", "u2", "u3")] + [(u, "b") for u in ("u1", "u2", "u3")]
    rows += [("v1", "c"), ("v2", "c"), ("only_a", "a")]
    data = interactions(rows)
    source = EaseSource(reg=1.0).fit(data)
    a, b, c = (code(data.item_ids, name) for name in "abc")
    column = {item: i for i, item in enumerate(source.items)}
    w = source.weights
    assert w[column[a], column[b]] == pytest.approx(3 / 5)
    assert w[column[b], column[a]] == pytest.approx(3 / 4)
    assert w[column[a], column[c]] == pytest.approx(0.0, abs=1e-7)
    assert w[column[c], column[b]] == pytest.approx(0.0, abs=1e-7)
    assert np.all(np.diag(w) == 0.0)

    only_a = code(data.user_ids, "only_a")
    items, scores = source.recommend(np.array([only_a]), k=2, exclude=data.seen())
    # The user's score for item j is x_u B = B_aj: b gets 3/5, c gets 0; a is seen.
    assert items[0, 0] == b and scores[0, 0] == pytest.approx(3 / 5)
    assert a not in items[0]


def test_input_is_binary_weights_do_not_change_the_model():
    # EASE fits 0/1 targets: a pair weighing 5 must count as a pair weighing 1.
    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(12, size=4, replace=False)]
    plain = interactions([(u, i, 1.0) for u, i in rows])
    heavy = interactions([(u, i, float(rng.integers(1, 6))) for u, i in rows])
    first, second = EaseSource(reg=5.0).fit(plain), EaseSource(reg=5.0).fit(heavy)
    assert np.array_equal(first.items, second.items)
    assert np.allclose(first.weights, second.weights)
    # And the fitted weights are the closed form of the binary matrix's Gram.
    x = plain.seen().toarray()[:, first.items]
    assert np.allclose(first.weights, ease_weights(x.T @ x, 5.0), atol=1e-6)


def test_the_item_cap_keeps_the_most_engaged_items_and_never_recommends_the_others():
    # Users per item from u0..u4: i0 5, i1 4, i2 3, i3 2, i4 1; fan adds one user to i0 and i3,
    # tail one to i4: i0 6, i1 4, i2 3, i3 3, i4 2. With max_items 3 the model holds i0, i1 and
    # one of the tied i2 / i3: i2, on its lower code (the documented tie-break).
    rows = [(f"u{u}", f"i{i}") for i in range(5) for u in range(5 - i)]
    rows += [("fan", "i3"), ("fan", "i0"), ("tail", "i4")]
    data = interactions(rows)
    source = EaseSource(reg=1.0, max_items=3).fit(data)
    assert sorted(data.item_ids[source.items]) == ["i0", "i1", "i2"]
    assert source.weights.shape == (3, 3)

    users = np.arange(data.n_users)
    items, _ = source.recommend(users, k=5)
    outside = {code(data.item_ids, "i3"), code(data.item_ids, "i4")}
    assert not outside & set(items[items >= 0].tolist())
    # tail only engaged items outside the model: no history in it, so no answer at all.
    tail = code(data.user_ids, "tail")
    assert items[tail].tolist() == [-1] * 5


def test_seen_items_are_masked_and_a_user_without_history_gets_padding():
    rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "b"), ("u3", "c")]
    data = interactions(rows, extra_users=["newcomer"])
    assert data.n_users == 4
    source = EaseSource(reg=1.0).fit(data)
    seen = data.seen()
    users = np.arange(4)
    items, scores = source.recommend(users, k=3, exclude=seen)
    for user in range(3):
        got = set(items[user][items[user] >= 0].tolist())
        assert not got & set(seen[user].indices.tolist())  # nothing the user already engaged with
    # u1 saw a and b: c is the only item left, so exactly one answer then padding.
    assert (items[0] >= 0).sum() == 1
    newcomer = code(data.user_ids, "newcomer")
    assert items[newcomer].tolist() == [-1, -1, -1]
    assert np.all(np.isneginf(scores[newcomer]))


def test_an_empty_log_answers_with_padding():
    data = Interactions(
        user_ids=np.array(["u"], dtype=object),
        item_ids=np.array(["a"], dtype=object),
        user=np.zeros(0, np.int32),
        item=np.zeros(0, np.int32),
        weight=np.zeros(0, np.float32),
        time_s=np.zeros(0),
    )
    items, scores = EaseSource(reg=1.0).fit(data).recommend(np.array([0]), k=2)
    assert items.tolist() == [[-1, -1]] and np.all(np.isneginf(scores))
