"""The pipeline serves its best source's order unless the ranker beats it clearly on validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from reelhouse.evaluation.pipeline import Candidates, PipelineOptions, RecallRankPipeline
from reelhouse.recall.base import Interactions
from reelhouse.recall.metrics import ndcg_per_row, positives_matrix, topk_metrics

from .fakes import CountSource, FixedSource, OracleSource, _answer

FAST_LGBM = {
    "n_estimators": 30,
    "learning_rate": 0.2,
    "num_leaves": 7,
    "min_child_samples": 10,
    "num_threads": 1,
    "verbose": -1,
}


class FakeModel:
    """Stands in for the LightGBM booster: predicts fixed scores, one per candidate row."""

    best_iteration = None

    def __init__(self, predicted: np.ndarray) -> None:
        self.predicted = np.asarray(predicted, dtype=np.float32)

    def predict(self, X, num_iteration=None):
        assert len(X) == len(self.predicted)
        return self.predicted


def decision_case(min_lift_z: float):
    """Four users, user u's only validation positive is item u; items 8 and 9 are never positive.

    Source "s" answers [9, u] for every user: the positive second, nDCG@10 = 1/log2(3) each.
    Source "t" answers [9, 8]: nDCG 0. The ranker's candidates are 9 and u; it scores u first
    for users 0-2 and 9 first for user 3, so its nDCG is 1, 1, 1, 1/log2(3).
    """
    n_users, n_items = 4, 10
    users = np.arange(n_users)
    truth = positives_matrix(users, users, n_users, n_items)
    answers = {
        "s": (np.column_stack([np.full(n_users, 9), users]), np.tile([2.0, 1.0], (n_users, 1)).astype(np.float32)),
        "t": (np.tile([9, 8], (n_users, 1)), np.tile([2.0, 1.0], (n_users, 1)).astype(np.float32)),
    }
    row = np.repeat(users, 2)
    item = np.column_stack([np.full(n_users, 9), users]).ravel()
    predicted = np.array([0, 1, 0, 1, 0, 1, 1, 0], dtype=np.float32)  # row 3: item 9 above item 3
    eval_set = Candidates(row, item, np.zeros((len(row), 1), np.float32), ["x"], [])
    options = PipelineOptions(quotas={"s": 5, "t": 5}, min_lift_z=min_lift_z)
    pipeline = RecallRankPipeline({"s": FixedSource("s", [9]), "t": FixedSource("t", [9])}, options)
    pipeline.model = FakeModel(predicted)
    return pipeline, eval_set, answers, truth


# Per-user lift over "s": d, d, d, 0 with d = 1 - 1/log2(3). Mean 0.75 d; sample std 0.5 d
# (deviations 0.25 d x3 and -0.75 d: (3 x 0.0625 + 0.5625) d² / 3 = 0.25 d²); standard error
# 0.5 d / sqrt(4) = 0.25 d. So the lift is exactly 3 standard errors.
D = 1 - 1 / np.log2(3)


def test_ndcg_per_row_known_values():
    # Row 0: positives {1, 2}, hits at ranks 1 and 3: (1 + 1/log2 4) / (1 + 1/log2 3).
    # Row 1: no positives, left out. Row 2: positive {4} recommended twice, at ranks 2 and 3:
    # only the first copy counts, 1/log2 3. Row 3: one column given for k = 3 (padding), a hit.
    recommended = np.array([[1, 7, 2], [1, 2, 3], [0, 4, 4], [5, -1, -1]])[:, :3]
    positives = positives_matrix(np.array([0, 0, 2, 3]), np.array([1, 2, 4, 5]), 4, 8)
    got = ndcg_per_row(recommended, positives, 3)
    assert got == pytest.approx([(1 + 0.5) / (1 + 1 / np.log2(3)), 1 / np.log2(3), 1.0])
    assert ndcg_per_row(recommended[:, :1], positives, 3) == pytest.approx([1 / (1 + 1 / np.log2(3)), 0.0, 1.0])


def test_ndcg_per_row_averages_to_the_reported_ndcg():
    # The decision compares per-user values whose mean must be the metric the report prints.
    rng = np.random.default_rng(6)
    recommended = rng.integers(-1, 30, size=(50, 12))
    positives = positives_matrix(rng.integers(0, 50, 120), rng.integers(0, 30, 120), 50, 30)
    for k in (1, 5, 10):
        per_row = ndcg_per_row(recommended, positives, k)
        assert len(per_row) == (np.diff(positives.indptr) > 0).sum()
        assert per_row.mean() == pytest.approx(topk_metrics(recommended, positives, [k])[f"ndcg@{k}"])


def test_the_decision_rule_on_a_lift_of_exactly_three_standard_errors():
    pipeline, eval_set, answers, truth = decision_case(min_lift_z=2.9)
    decision = pipeline._decide(eval_set, answers, truth)
    assert decision["validation"]["ranker"] == pytest.approx((3 + 1 / np.log2(3)) / 4, abs=1e-6)
    assert decision["validation"]["s"] == pytest.approx(1 / np.log2(3), abs=1e-6)
    assert decision["validation"]["t"] == 0.0
    assert decision["lift"] == pytest.approx(0.75 * D, abs=1e-6)
    assert decision["lift_stderr"] == pytest.approx(0.25 * D, abs=1e-6)
    assert decision["fallback"] is None  # 3 > 2.9 standard errors: the ranker is used
    assert "the ranker is used" in decision["summary"]

    pipeline, eval_set, answers, truth = decision_case(min_lift_z=3.1)
    decision = pipeline._decide(eval_set, answers, truth)
    assert decision["fallback"] == "s"  # 3 < 3.1: not a clear lift; s, not t, is the best source
    assert "serves s's order" in decision["summary"]


def test_a_fallen_back_pipeline_ranks_by_the_sources_own_order():
    pipeline, eval_set, answers, truth = decision_case(min_lift_z=3.1)
    pipeline.decision = pipeline._decide(eval_set, answers, truth)
    pipeline.stats = object()  # fitted (rank refuses an unfitted pipeline); unused when falling back
    recommended = {
        "s": (np.array([[5, 2, 7], [1, 0, 6]]), np.array([[3.0, 2.0, 1.0], [9.0, 8.0, 7.0]], np.float32)),
        "t": (np.array([[4, 4, 4], [4, 4, 4]]), np.zeros((2, 3), np.float32)),
    }
    items, scores = pipeline.rank(np.array([0, 1]), 2, recommended)
    assert items.tolist() == [[5, 2], [1, 0]]
    assert scores.tolist() == [[3.0, 2.0], [9.0, 8.0]]


def constructed_data(n_users=200, n_items=60, n_junk=10, per_user=10, valid_per_user=3, seed=0):
    """Users engage ``per_user`` random items of the first ``n_items`` at random times; ``valid``
    holds ``valid_per_user`` more items per user; the last ``n_junk`` items are never engaged."""
    rng = np.random.default_rng(seed)
    total = n_items + n_junk
    user, item, valid_items = [], [], []
    for u in range(n_users):
        picked = rng.choice(n_items, size=per_user + valid_per_user, replace=False)
        user += [u] * per_user
        item += picked[:per_user].tolist()
        valid_items.append(picked[per_user:])
    train = Interactions(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(total)], dtype=object),
        user=np.array(user, np.int32),
        item=np.array(item, np.int32),
        weight=np.ones(len(user), np.float32),
        time_s=rng.permutation(len(user)).astype(np.float64) * 60.0,
    )
    valid = positives_matrix(np.repeat(np.arange(n_users), valid_per_user), np.concatenate(valid_items), n_users, total)
    return train, valid, np.arange(n_items, total)


def every_positive(train: Interactions, valid: sp.csr_matrix) -> sp.csr_matrix:
    both = (train.seen() + valid).tocsr()
    both.data[:] = 1
    return both


class JunkFirstOracle:
    """Knows every positive but answers ``junk`` items first: its own top 10 is all junk."""

    name = "junk_first"

    def __init__(self, positives: sp.csr_matrix, junk: np.ndarray) -> None:
        self.positives, self.junk = sp.csr_matrix(positives), junk

    def fit(self, interactions):
        return self

    def recommend(self, users, k, exclude=None):
        users = np.asarray(users, dtype=np.int64)
        width = len(self.junk) + int(np.diff(self.positives.indptr)[users].max(initial=0))
        lists = np.full((len(users), width), -1, dtype=np.int64)
        for row, user in enumerate(users):
            ranked = np.concatenate([self.junk, np.sort(self.positives[user].indices)])
            lists[row, : len(ranked)] = ranked
        scores = np.broadcast_to(-np.arange(width, dtype=np.float32), lists.shape)
        return _answer(lists, scores, users, k, exclude)


def test_a_ranker_that_cannot_beat_an_oracle_falls_back_to_it():
    # The oracle knows every positive (training labels and validation), so its validation
    # nDCG@10 is 1 for every user: the ranker can only tie it (lift 0, never > z x stderr) and
    # the pipeline must serve the oracle's order.
    train, valid, _ = constructed_data()
    oracle = OracleSource(every_positive(train, valid))
    options = PipelineOptions(quotas={"oracle": 10, "count": 20}, lgbm_params=FAST_LGBM, max_train_users=200)
    pipeline = RecallRankPipeline({"oracle": oracle, "count": CountSource()}, options)
    seen = train.seen()
    pipeline.fit(train, valid=valid, exclude=seen)

    assert pipeline.decision["fallback"] == "oracle"
    assert pipeline.decision["validation"]["oracle"] == pytest.approx(1.0)
    assert pipeline.decision["lift"] <= 0
    users = np.arange(train.n_users)
    items, _ = pipeline.recommend(users, 10, seen)
    expected, _ = oracle.recommend(users, 10, seen)
    assert np.array_equal(items, expected)
    # rank() on answers given from outside serves the oracle's answer too, whatever "count" says.
    recommended = {
        "oracle": oracle.recommend(users, 20, seen),
        "count": pipeline.sources["count"].recommend(users, 40, seen),
    }
    assert np.array_equal(pipeline.rank(users, 10, recommended)[0], expected)


def test_a_ranker_that_clearly_wins_is_used():
    # The only source knows every positive but puts 10 never-engaged items first, so its own top
    # 10 holds no positive (validation nDCG@10 0). Its rank (>= 10 for positives) and the items'
    # popularity (0 for the junk) separate the positives perfectly: the ranker lifts nDCG@10 to
    # about 1, far beyond the noise, and must be used.
    train, valid, junk = constructed_data()
    source = JunkFirstOracle(every_positive(train, valid), junk)
    options = PipelineOptions(quotas={"junk_first": 20}, lgbm_params=FAST_LGBM, max_train_users=200)
    pipeline = RecallRankPipeline({"junk_first": source}, options)
    seen = train.seen()
    pipeline.fit(train, valid=valid, exclude=seen)

    assert pipeline.decision["fallback"] is None
    assert pipeline.decision["validation"]["junk_first"] == 0.0
    assert pipeline.decision["validation"]["ranker"] > 0.9
    users = np.arange(train.n_users)
    items, _ = pipeline.recommend(users, 3, seen)
    # Each user's 3 validation positives (all they have left) fill the top 3, no junk among them.
    assert np.array_equal(np.sort(items, axis=1), np.sort(valid.toarray().nonzero()[1].reshape(-1, 3), axis=1))
    assert not np.isin(items, junk).any()


def test_a_fallen_back_pipeline_answers_k_columns_like_any_source():
    train, valid, _ = constructed_data(n_users=120)
    oracle = OracleSource(every_positive(train, valid))
    options = PipelineOptions(quotas={"oracle": 5, "count": 5}, lgbm_params=FAST_LGBM)
    pipeline = RecallRankPipeline({"oracle": oracle, "count": CountSource()}, options)
    pipeline.fit(train, valid=valid, exclude=train.seen())
    assert pipeline.decision["fallback"] == "oracle"
    items, scores = pipeline.recommend(np.arange(4), 15, train.seen())  # deeper than 5 x 2
    assert items.shape == (4, 15) and scores.shape == (4, 15)
