"""Rankers: the LightGBM fast path equals the pipeline, other pipelines fall back, references parse.

The pipelines are fitted by the project's own training functions (training/ranker.py) on a small
synthetic set, so the fast path is checked against exactly what training registers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reelhouse.config import TrainingConfig
from reelhouse.serving.features import Categorical, ModelInputs
from reelhouse.serving.ranking import (
    LightGBMFastPath,
    ModelRanker,
    PopularityRanker,
    RandomRanker,
    parse_ref,
    request_seed,
    synthetic_inputs,
    verified_fast_path,
)
from reelhouse.training.columns import CATEGORICAL_COLUMNS, LABEL, NUMERIC_COLUMNS
from reelhouse.training.models import fit_lightgbm, fit_logistic_regression, model_inputs

TRAINING = TrainingConfig(
    lgbm_params={"n_estimators": 30, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 10, "n_jobs": 1},
    lr_params={"C": 1.0, "max_iter": 200},
)
CATEGORIES = {
    "device_os": ["ios", "android", "web"],
    "device_network": ["wifi", "cellular"],
    "topic": ["t0", "t1", "t2", "t3"],
    "user_country": ["US", "BR"],
    "user_age_group": ["18-24", "25-34"],
}


def examples(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.gamma(2.0, 5.0, rows) for name in NUMERIC_COLUMNS})
    frame.loc[rng.random(rows) < 0.15, "video_like_rate_1d"] = np.nan
    for name, values in CATEGORIES.items():
        frame[name] = rng.choice([*values, None], rows).astype(object)
    logit = (
        0.2 * frame["user_topic_affinity_7d"]
        - 0.1 * frame["video_plays_1d"]
        + np.where(frame["topic"] == "t1", 1.0, 0.0)
    )
    frame[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def fitting_frames(train_rows: int, valid_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model inputs plus label, as the trainer receives them."""
    train, valid = examples(train_rows, seed), examples(valid_rows, seed + 1)
    return model_inputs(train).assign(label=train[LABEL]), model_inputs(valid).assign(label=valid[LABEL])


@pytest.fixture(scope="module")
def lightgbm():
    return fit_lightgbm(*fitting_frames(1500, 300, 1), TRAINING).pipeline


def request_inputs(rows: int = 300) -> ModelInputs:
    """A request's inputs: one device, one user, many topics (one never seen in training), gaps."""
    rng = np.random.default_rng(9)
    numeric = rng.gamma(2.0, 5.0, (rows, len(NUMERIC_COLUMNS)))
    numeric[rng.random(numeric.shape) < 0.1] = np.nan
    categorical = {
        "device_os": Categorical(("android",), np.zeros(rows, dtype=np.int32)),
        "device_network": Categorical(("satellite",), np.zeros(rows, dtype=np.int32)),  # unseen in training
        "topic": Categorical(("t1", "t3", "t-new", None), rng.integers(0, 4, rows).astype(np.int32)),
        "user_country": Categorical((None,), np.zeros(rows, dtype=np.int32)),
        "user_age_group": Categorical(("25-34",), np.zeros(rows, dtype=np.int32)),
    }
    return ModelInputs(numeric, {name: categorical[name] for name in CATEGORICAL_COLUMNS})


def test_the_fast_path_equals_the_pipeline_on_a_request(lightgbm):
    fast, why = verified_fast_path(lightgbm)
    assert fast is not None, why
    inputs = request_inputs()
    expected = lightgbm.predict_proba(inputs.frame())[:, 1]
    np.testing.assert_allclose(fast.predict(inputs), expected, rtol=1e-12, atol=0)
    ranker = ModelRanker("reelhouse-ranker", 3, lightgbm, fast, "lightgbm")
    assert ranker.label == "reelhouse-ranker/3"
    np.testing.assert_allclose(ranker.score(inputs, len(inputs), 0), expected, rtol=1e-12)


def test_the_verification_sample_covers_unseen_and_missing_categories(lightgbm):
    fast = LightGBMFastPath.from_pipeline(lightgbm)
    sample = synthetic_inputs(fast, rows=64)
    for name in CATEGORICAL_COLUMNS:
        levels = sample.categorical[name].levels
        assert None in levels and "__never_seen_in_training__" in levels
    assert np.isnan(sample.numeric).any()


def test_a_fast_path_that_disagrees_with_the_pipeline_is_refused(lightgbm, monkeypatch):
    real = LightGBMFastPath.matrix

    def shifted(self, inputs):
        x = real(self, inputs)
        return x[:, ::-1].copy()  # columns in the wrong order

    monkeypatch.setattr(LightGBMFastPath, "matrix", shifted)
    fast, why = verified_fast_path(lightgbm)
    assert fast is None and "differs" in why


def test_other_pipelines_are_scored_through_the_pipeline():
    pipeline = fit_logistic_regression(*fitting_frames(600, 200, 3), TRAINING).pipeline
    fast, why = verified_fast_path(pipeline)
    assert fast is None and "LightGBM" in why
    inputs = request_inputs(50)
    ranker = ModelRanker("reelhouse-ranker", 1, pipeline, None, "logistic_regression")
    np.testing.assert_allclose(ranker.score(inputs, 50, 0), pipeline.predict_proba(inputs.frame())[:, 1])


def test_baselines():
    inputs = request_inputs(5)
    inputs.numeric[:, NUMERIC_COLUMNS.index("video_trending_score")] = [3.0, np.nan, 1.0, 7.0, 0.5]
    assert PopularityRanker().score(inputs, 5, 0).tolist() == [3.0, 0.0, 1.0, 7.0, 0.5]
    seed = request_seed("r-abc")
    first = RandomRanker().score(None, 5, seed)
    assert np.array_equal(first, RandomRanker().score(None, 5, seed))  # replayable from the request id
    assert not np.array_equal(first, RandomRanker().score(None, 5, request_seed("r-abd")))


def test_ranker_references():
    assert parse_ref("alias:champion") == ("alias", "champion")
    assert parse_ref("version:12") == ("version", "12")
    assert parse_ref("popularity") == ("popularity", "")
    for bad in ("alias:", "version:x", "champion", "alias:a b"):
        with pytest.raises(ValueError, match="ranker reference"):
            parse_ref(bad)
