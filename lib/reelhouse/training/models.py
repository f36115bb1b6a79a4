"""The two rankers' model pipelines: their inputs, preprocessing and fitting.

Both are scikit-learn Pipelines over the same model inputs (training/columns.py):
:func:`model_inputs` gives the dtypes they expect, from training, evaluation and serving alike.
Logistic regression sees median-imputed, standardised numerics and one-hot categoricals;
LightGBM sees the numerics as they are and the categoricals as integer codes, and stops early on
the ``valid`` split. :data:`RANKERS` maps each kind to its fitting function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from reelhouse.config import TrainingConfig
from reelhouse.errors import ReelhouseError
from reelhouse.training.columns import CATEGORICAL_COLUMNS, LABEL, MODEL_INPUT_COLUMNS, NUMERIC_COLUMNS

LOGISTIC_REGRESSION = "logistic_regression"
LIGHTGBM = "lightgbm"
EARLY_STOPPING_ROUNDS = 50  # LightGBM rounds without a better validation log-loss before it stops
MISSING_CATEGORY = "__missing__"


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """MODEL_INPUT_COLUMNS of ``frame`` as the rankers expect them: numerics float64, categoricals
    strings (object), missing values NaN in both. Training, evaluation and serving all use this."""
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ReelhouseError(f"model input columns missing: {missing}; see reelhouse/training/columns.py")
    numeric = frame.loc[:, list(NUMERIC_COLUMNS)].astype(np.float64)
    categorical = {}
    for column in CATEGORICAL_COLUMNS:
        values = frame[column].astype("string")
        categorical[column] = values.astype(object).where(values.notna(), np.nan)
    return pd.concat([numeric, pd.DataFrame(categorical, index=frame.index)], axis=1)


def load_registered(registered_model: str, version: int) -> Any:
    """Version ``version`` of ``registered_model`` from the MLflow registry, as the sklearn pipeline
    it was logged as (the promotion gate and off-policy evaluation score it with ``predict_proba``)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{registered_model}/{version}")


def _categorical_imputers() -> list[tuple[str, SimpleImputer]]:
    # Gaps arrive as NaN from pandas and as None from Arrow; both become one "missing" category.
    return [
        ("fill_nan", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        ("fill_none", SimpleImputer(missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY)),
    ]


def logistic_regression_pipeline(params: Mapping[str, Any], seed: int) -> Pipeline:
    """Median-imputed (plus missing indicators) standardised numerics and one-hot categoricals -> LR."""
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline([*_categorical_imputers(), ("one_hot", OneHotEncoder(handle_unknown="ignore"))])
    preprocess = ColumnTransformer(
        [("numeric", numeric, list(NUMERIC_COLUMNS)), ("categorical", categorical, list(CATEGORICAL_COLUMNS))]
    )
    return Pipeline([("preprocess", preprocess), ("model", LogisticRegression(**{"random_state": seed, **params}))])


def lightgbm_preprocessor() -> ColumnTransformer:
    """Numerics as they are (LightGBM handles NaN); categoricals as integer codes, unseen ones -1.

    LightGBM treats a negative category as missing, so a category first seen at serving time
    takes the missing branch of each split.
    """
    ordinal = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, dtype=np.float64
    )
    categorical = Pipeline([*_categorical_imputers(), ("ordinal", ordinal)])
    return ColumnTransformer(
        [("numeric", "passthrough", list(NUMERIC_COLUMNS)), ("categorical", categorical, list(CATEGORICAL_COLUMNS))],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")


@dataclass
class FittedRanker:
    kind: str
    pipeline: Pipeline
    fit_s: float
    params: dict[str, Any]  # logged as run parameters
    importance: pd.Series  # per model feature, named after the measure (gain, |coefficient|)
    fit_metrics: dict[str, float] = field(default_factory=dict)


def fit_logistic_regression(train: pd.DataFrame, valid: pd.DataFrame, training: TrainingConfig) -> FittedRanker:
    del valid  # no early stopping: LR runs to convergence (or lr_params.max_iter)
    started = time.perf_counter()
    pipeline = logistic_regression_pipeline(training.lr_params, training.seed)
    pipeline.fit(train.loc[:, list(MODEL_INPUT_COLUMNS)], train[LABEL].to_numpy())
    fit_s = time.perf_counter() - started
    model = pipeline.named_steps["model"]
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    importance = pd.Series(np.abs(model.coef_[0]), index=names, name="|coefficient| (standardised inputs)")
    return FittedRanker(
        LOGISTIC_REGRESSION, pipeline, fit_s, dict(model.get_params()), importance, {"n_iter": float(model.n_iter_[0])}
    )


def fit_lightgbm(train: pd.DataFrame, valid: pd.DataFrame, training: TrainingConfig) -> FittedRanker:
    """Fit the preprocessor and the booster apart (the booster early-stops on the transformed
    validation rows), then join them into one Pipeline."""
    import lightgbm

    started = time.perf_counter()
    preprocess = lightgbm_preprocessor()
    x_train = preprocess.fit_transform(train.loc[:, list(MODEL_INPUT_COLUMNS)])
    x_valid = preprocess.transform(valid.loc[:, list(MODEL_INPUT_COLUMNS)])
    model = lightgbm.LGBMClassifier(**{"verbose": -1, **training.lgbm_params, "random_state": training.seed})
    model.fit(
        x_train,
        train[LABEL].to_numpy(),
        eval_X=(x_valid,),
        eval_y=(valid[LABEL].to_numpy(),),
        categorical_feature=list(CATEGORICAL_COLUMNS),
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    fit_s = time.perf_counter() - started
    booster = model.booster_
    importance = pd.Series(
        booster.feature_importance(importance_type="gain"), index=booster.feature_name(), name="gain"
    )
    params = {**model.get_params(), "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
    return FittedRanker(
        LIGHTGBM,
        Pipeline([("preprocess", preprocess), ("model", model)]),
        fit_s,
        params,
        importance,
        {"best_iteration": float(model.best_iteration_ or model.n_estimators_)},
    )


RANKERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, TrainingConfig], FittedRanker]] = {
    LOGISTIC_REGRESSION: fit_logistic_regression,
    LIGHTGBM: fit_lightgbm,
}
