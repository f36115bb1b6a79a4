"""Synthetic serving data shared by ``make bench-serve`` and the serving integration tests.

The configs, feature values and a training set over the catalogue's categories that a feed-service
environment is built from, plus both rankers trained and registered by the project's own trainer.
Benchmarks own it (they build the large environment); the tests import it, never the reverse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import DEVICE_OS, NETWORKS
from reelhouse.features.registry import feature_names
from reelhouse.training.columns import CATEGORICAL_COLUMNS, LABEL, NUMERIC_COLUMNS, SPLIT

TOKEN = "serving-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # what the app's gateway sends with every call
COUNTRIES = ("US", "BR", "IN", "DE", "GB")
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45+")
TABLE_SOURCES = ("als", "covisit", "topic", "popularity")


def _update(config: ReelhouseConfig, section: str, **values: Any) -> ReelhouseConfig:
    """``config`` with fields of one section replaced, validated as a config file's would be."""
    current = getattr(config, section)
    merged = {**current.model_dump(), **values}
    for key, value in values.items():  # nested sections (serving.budgets) take partial updates
        if isinstance(value, dict) and isinstance(getattr(current, key, None), BaseModel):
            merged[key] = {**getattr(current, key).model_dump(), **value}
    return config.model_copy(update={section: type(current).model_validate(merged)})


def serving_config(
    base: ReelhouseConfig, *, experiments: list | None = None, **sections: dict[str, Any]
) -> ReelhouseConfig:
    """``base`` with some fields of some sections replaced: ``serving_config(c, serving={"ranker_alias": "x"})``."""
    config = base
    for section, values in sections.items():
        config = _update(config, section, **values)
    if experiments is not None:
        from reelhouse.config import ExperimentConfig

        config = config.model_copy(update={"experiments": [ExperimentConfig.model_validate(e) for e in experiments]})
    return config


def feature_values(entity: str, rng: np.random.Generator, **fixed: float) -> dict[str, float | int | None]:
    """Plausible values of every registry feature of ``entity`` (rates in [0, 1], counts >= 0)."""
    values: dict[str, float | int | None] = {}
    for name in feature_names(entity):
        if any(word in name for word in ("rate", "ratio", "affinity")):
            values[name] = float(rng.uniform(0, 1))
        elif name.endswith(("_impressions_1h", "_plays_1h", "_events_1d", "_plays_1d", "_plays_7d", "_plays_28d")):
            values[name] = int(rng.poisson(20))
        else:
            values[name] = float(rng.gamma(2.0, 10.0))
    values.update(fixed)
    return values


def synthetic_training_set(rows: int, users: list[str], topics: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """A training set over the catalogue's categories whose label depends on two features and the OS."""
    frame = pd.DataFrame(
        [
            {**feature_values("video", rng), **feature_values("user", rng), **feature_values("user_topic", rng)}
            for _ in range(rows)
        ]
    )
    frame["position"] = rng.integers(0, 10, rows).astype(float)
    frame["hour_of_day"] = rng.integers(0, 24, rows).astype(float)
    choices = {
        "device_os": sorted(DEVICE_OS),
        "device_network": sorted(NETWORKS),
        "topic": topics,
        "user_country": list(COUNTRIES),
        "user_age_group": list(AGE_GROUPS),
    }
    for name in CATEGORICAL_COLUMNS:
        values = rng.choice([*choices[name], None], rows).astype(object)
        frame[name] = values
    logit = 3.0 * frame["user_topic_affinity_7d"] + 2.5 * frame["video_completion_rate_1d"] - 3.0
    logit += np.where(frame["device_os"] == "ios", 0.6, 0.0)
    frame[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame["user_id"] = [users[i % len(users)] for i in range(rows)]
    frame["video_id"] = [f"train-v{i}" for i in range(rows)]
    frame["request_id"] = [f"train-r{i // 8}" for i in range(rows)]
    frame["impression_time"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="min")
    cut_valid, cut_test = int(rows * 0.7), int(rows * 0.85)
    frame[SPLIT] = np.select([np.arange(rows) < cut_valid, np.arange(rows) < cut_test], ["train", "valid"], "test")
    assert set(NUMERIC_COLUMNS) <= set(frame.columns)
    return frame


def train_registered_rankers(config: ReelhouseConfig, training_set: pd.DataFrame) -> dict[str, int]:
    """Both rankers through the project's trainer; LightGBM made champion, LR challenger."""
    from reelhouse.training.models import LIGHTGBM, LOGISTIC_REGRESSION
    from reelhouse.training.promotion import CHALLENGER, CHAMPION
    from reelhouse.training.ranker import train_rankers

    result = train_rankers(config, training_set, {"training_set": 0})
    versions = {kind: run.version for kind, run in result.models.items()}
    set_alias(config, CHAMPION, versions[LIGHTGBM])
    set_alias(config, CHALLENGER, versions[LOGISTIC_REGRESSION])
    return versions


def registry_client(config: ReelhouseConfig):  # noqa: ANN201 - an MlflowClient
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=config.mlflow.tracking_uri, registry_uri=config.mlflow.tracking_uri)


def set_alias(config: ReelhouseConfig, alias: str, version: int) -> None:
    registry_client(config).set_registered_model_alias(config.training.registered_model, alias, str(version))
