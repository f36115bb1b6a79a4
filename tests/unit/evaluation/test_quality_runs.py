"""``quality_runs`` (``make bench-quality``) end to end on a tiny generated log, without Spark."""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.config import load_config
from reelhouse.evaluation import pipeline as pipeline_module
from reelhouse.evaluation.quality import REPORTED, best_source_above_pipeline, quality_runs
from tests.conftest import PROJECT_DIR
from tests.support.synthetic_log import synthetic_log

QUOTAS = {"ease": 20, "covisit": 20, "embedding": 10, "content": 10, "popularity": 10}  # no "als": no Spark
GRID = {"ease": {"ease_reg": [5.0, 50.0]}, "covisit": {"covisit_shrink": [0.0, 5.0]}}
# A small single-threaded ranker keeps the three runs within seconds (the default 200 rounds of
# 31 leaves on every core is sized for MovieLens); what is checked here does not depend on it.
FAST_LGBM = {
    "n_estimators": 40,
    "learning_rate": 0.2,
    "num_leaves": 15,
    "min_child_samples": 20,
    "max_bin": 63,
    "num_threads": 1,
    "verbose": -1,
}


def no_spark():
    raise AssertionError("no source here needs Spark; quality_runs must not start a session")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    log, items = synthetic_log(n_users=200, n_items=100, n_interactions=4_000, n_topics=5, seed=3)
    log = log.rename(columns={"ts": "timestamp", "watch_ratio": "rating"})
    log.to_csv(root / "log.csv", index=False)
    # Content vectors: the item's topic one-hot plus a little seeded noise (list<float32>).
    rng = np.random.default_rng(3)
    topic = items["topic"].str[1:].astype(int).to_numpy()
    vectors = np.eye(5, dtype=np.float32)[topic] + rng.normal(0, 0.05, size=(len(items), 5)).astype(np.float32)
    table = pa.table(
        {"item_id": items["item_id"], "vec": pa.array([v.tolist() for v in vectors], pa.list_(pa.float32()))}
    )
    pq.write_table(table, root / "items.parquet")

    config = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})
    recall = config.recall.model_copy(update={"quotas": QUOTAS, "tuning_grid": GRID, "tuning_users": 100})
    training = config.training.model_copy(update={"seed": 7})
    config = config.model_copy(update={"recall": recall, "training": training})
    with pytest.MonkeyPatch.context() as patch:
        # run_evaluation imports PipelineOptions from the module when called: give it fast defaults.
        fast = functools.partial(pipeline_module.PipelineOptions, lgbm_params=FAST_LGBM)
        patch.setattr(pipeline_module, "PipelineOptions", fast)
        result = quality_runs(
            config,
            root / "log.csv",
            root / "items.parquet",
            no_spark,
            root / "reports",
            time_col="timestamp",
            rating_col="rating",
            vector_col="vec",
        )
    return result, root


def test_three_runs_each_with_every_model_and_metric(runs):
    result, _ = runs
    assert list(result) == ["no_time", "with_time", "content"]
    wanted = {f"{metric}@10" for metric in REPORTED}
    assert wanted == {"ndcg@10", "precision@10", "recall@10", "map@10"}
    for name, run in result.items():
        models = run["models"]
        # Sources fed by vectors only exist in the content run (the others have no item features).
        expected = {"random", "popularity", "ease", "covisit", "pipeline"}
        if name == "content":
            expected |= {"embedding", "content"}
        assert set(models) == expected, name
        for model, metrics in models.items():
            assert set(metrics) == wanted, (name, model)
            assert all(0.0 <= value <= 1.0 for value in metrics.values()), (name, model)
        json.dumps(run)  # the benchmark prints the runs as JSON


def test_the_sources_learn_something(runs):
    # The log has structure (tests/support/synthetic_log.py): every recall source beats the random floor.
    result, _ = runs
    for run in result.values():
        floor = run["models"]["random"]["ndcg@10"]
        for name in ("ease", "covisit", "popularity"):
            assert run["models"][name]["ndcg@10"] > floor


def test_every_run_is_tuned_and_records_the_pipeline_decision(runs):
    result, root = runs
    for name, run in result.items():
        assert "ease" in run["tuning"] and "covisit" in run["tuning"], name
        tuning = json.loads((root / "reports" / name / "tuning.json").read_text())
        assert set(tuning["chosen"]) == {"ease", "covisit"}
        assert len(tuning["trials"]["ease"]) == 2 and len(tuning["trials"]["covisit"]) == 2
        # Stratified split: the tuner holds out per user at random, never by time.
        assert tuning["holdout"] == "per-user random"
        assert {"ranker", "ease", "covisit", "popularity"} <= set(run["validation"])
        assert isinstance(run["pipeline"], str) and run["pipeline"]


def test_a_fallen_back_pipeline_scores_exactly_as_its_source(runs):
    # When the ranker does not clearly win, the pipeline serves the best source's order, so its
    # test metrics are that source's, to the digit; when it does, the decision names no source.
    result, _ = runs
    for name, run in result.items():
        fallback = re.search(r"the pipeline serves (\w+)'s order", run["pipeline"])
        if fallback is not None:
            assert run["models"]["pipeline"] == run["models"][fallback.group(1)], name
        else:
            assert "the ranker is used" in run["pipeline"], name
        above = best_source_above_pipeline(run)
        assert all(run["models"][model]["ndcg@10"] > run["models"]["pipeline"]["ndcg@10"] for model in above)
