import json

import numpy as np
import pytest

from reelhouse.evaluation.data import evaluation_data
from reelhouse.evaluation.item_features import read_item_features
from reelhouse.evaluation.logfile import LogColumns, read_interaction_log
from reelhouse.evaluation.pipeline import PipelineOptions, RecallRankPipeline
from reelhouse.evaluation.protocol import evaluate, evaluate_data, random_recommendations
from reelhouse.evaluation.report import markdown_report, write_report
from reelhouse.recall.base import Interactions
from reelhouse.recall.metrics import positives_matrix
from tests.support.synthetic_log import synthetic_log

from .fakes import CountSource, FavouriteTopicSource, FixedSource, OracleSource


def _tiny():
    # Users 0..2, items 0..5. Training: item 0 three times, item 1 twice, item 2 once.
    train = Interactions(
        user_ids=np.array(["a", "b", "c"], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(6)], dtype=object),
        user=np.array([0, 1, 2, 0, 1, 0], dtype=np.int32),
        item=np.array([0, 0, 0, 1, 1, 2], dtype=np.int32),
        weight=np.ones(6, dtype=np.float32),
        time_s=np.arange(6, dtype=np.float64),
    )
    # Held out: a -> {3}, b -> {2, 4}; c has none (not evaluated).
    test = positives_matrix(np.array([0, 1, 1]), np.array([3, 2, 4]), 3, 6)
    return train, test


def test_every_model_is_fitted_once_and_asked_with_the_seen_mask():
    train, test = _tiny()
    fixed = FixedSource("fixed", [0, 4, 3, 2])
    result = evaluate(train, test, [1, 2], {"fixed": fixed, "oracle": OracleSource(test)}, seed=1)

    assert list(result.models) == ["random", "popularity", "fixed", "oracle"]
    assert result.users == 2
    assert fixed.fitted == [6]
    assert (fixed.excludes[0] != train.seen()).nnz == 0
    # Oracle: every positive at the top; b's two positives fill K=2.
    assert result.models["oracle"]["recall@2"] == pytest.approx(1.0)
    assert result.models["oracle"]["ndcg@1"] == pytest.approx(1.0)
    # Fixed list minus seen items: a (seen 0,1,2) gets [4, 3] -> hit at rank 2 (recall 1);
    # b (seen 0,1) gets [4, 3] -> hit at rank 1 of 2 positives (recall 1/2).
    assert result.models["fixed"]["recall@2"] == pytest.approx((1 + 0.5) / 2)
    assert result.models["fixed"]["precision@1"] == pytest.approx((0 + 1) / 2)
    # Popularity baseline: items 0, 1, 2 only (the others were never trained on): a has seen
    # them all, b gets 2, a hit for one of its two positives.
    assert result.models["popularity"]["recall@2"] == pytest.approx((0 + 0.5) / 2)
    assert json.loads(result.to_json())["models"]["fixed"]["recall@2"] == pytest.approx(0.75)


def test_a_popularity_source_replaces_the_baseline():
    train, test = _tiny()
    popularity = FixedSource("popularity", [4])
    result = evaluate(train, test, [1], {"popularity": popularity})
    assert list(result.models) == ["random", "popularity"]
    assert result.models["popularity"]["hit_rate@1"] == pytest.approx(0.5)


def test_random_draws_distinct_unseen_items_reproducibly():
    train, _ = _tiny()
    seen = train.seen()
    users = np.array([0, 1, 2])
    first = random_recommendations(users, 4, 6, seen, seed=5)
    assert (first == random_recommendations(users, 4, 6, seen, seed=5)).all()
    for row, user in zip(first, users, strict=True):
        picked = row[row >= 0]
        assert len(set(picked)) == len(picked)
        assert not set(picked) & set(seen[user].indices)
    # User a has seen 3 of 6 items: only 3 remain, the 4th slot is padding.
    assert sorted(first[0][:3]) == [3, 4, 5] and first[0][3] == -1


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    log, items = synthetic_log(n_users=300, n_items=200, n_interactions=9_000, seed=1)
    log.to_csv(root / "log.csv", index=False)
    items.to_csv(root / "items.csv", index=False)
    rows = read_interaction_log(
        root / "log.csv", LogColumns("user_id", "item_id", time="ts", rating="watch_ratio")
    ).rows
    return evaluation_data(rows, read_item_features(root / "items.csv", "item_id"))


def test_pipeline_learns_to_rank_the_blended_candidates(synthetic_data, tmp_path):
    count, favourite = CountSource(), FavouriteTopicSource()
    options = PipelineOptions(
        quotas={"favourite": 30, "count": 20},
        max_train_users=300,
        lgbm_params={"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "verbose": -1},
    )
    result = evaluate_data(synthetic_data, [10, 20], {"count": count, "favourite": favourite}, pipeline=options)

    models = result.models
    assert list(models) == ["random", "popularity", "count", "favourite", "pipeline"]
    # The data's structure (module docstring of tests/support/synthetic_log.py): topic > popularity > random.
    assert models["count"]["ndcg@10"] > 2 * models["random"]["ndcg@10"]
    assert models["favourite"]["ndcg@10"] > models["count"]["ndcg@10"]
    assert models["pipeline"]["ndcg@10"] > models["count"]["ndcg@10"]
    # Fitted first on the earlier 80 % (for the ranker's labels), last on all of train.
    assert len(count.fitted) == 2 and count.fitted[-1] == len(synthetic_data.train.user) > count.fitted[0]

    paths = write_report(result, tmp_path, {"data": "synthetic"})
    assert paths["plot"].stat().st_size > 1000
    table = markdown_report(result)
    assert "| pipeline |" in table and "## K = 20" in table


def test_pipeline_ranks_what_the_sources_recall(synthetic_data):
    train = synthetic_data.train
    options = PipelineOptions(
        quotas={"favourite": 15, "count": 10}, objective="binary", lgbm_params={"n_estimators": 20, "verbose": -1}
    )
    pipeline = RecallRankPipeline({"count": CountSource(), "favourite": FavouriteTopicSource()}, options)
    pipeline.fit(train, valid=synthetic_data.valid, exclude=synthetic_data.seen)
    users = np.arange(20)
    items, scores = pipeline.recommend(users, 10, synthetic_data.seen)
    assert items.shape == (20, 10)
    assert (np.diff(scores, axis=1)[np.isfinite(scores[:, 1:])] <= 0).all()  # best first
    seen = np.asarray(synthetic_data.seen[users[:, None], np.maximum(items, 0)].todense()).astype(bool)
    assert not (seen & (items >= 0)).any()
    assert {"count_rank", "favourite_score", "topic_affinity", "item_users"} <= set(pipeline.feature_importance())
