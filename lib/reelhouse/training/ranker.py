"""The rankers: logistic regression and LightGBM predicting P(label=1) of an impression, tracked in MLflow.

This module trains and logs them; the model pipelines are :mod:`reelhouse.training.models` and
the training set's splits :mod:`reelhouse.training.splits`.

Both are scikit-learn Pipelines over the same model inputs (training/columns.py). They are fitted
on the ``train`` split (a seeded sample of at most ``training.max_fit_rows`` rows; LightGBM stops
early on ``valid``) and measured on ``valid`` and ``test`` next to a popularity baseline that
ranks by ``video_plays_1d``. Each model is one MLflow run, nested under a ``train_ranker`` run,
with its parameters, metrics, plots and the model itself, registered as a new version of
``training.registered_model``. The promotion gate (promotion.py) then decides the aliases.

A registered ranker takes a pandas DataFrame of MODEL_INPUT_COLUMNS (:func:`model_inputs` gives
the dtypes it expects) and answers ``predict_proba`` (column 1 is P(label=1)); its pyfunc flavour's
``predict`` returns the same (n, 2) matrix. Models are stored in the skops format (no pickle).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import LakeError, ReelhouseError
from reelhouse.lake.delta import Lake, commit_metadata
from reelhouse.tracking import config_dump, configure_mlflow, lineage_tags
from reelhouse.training.columns import (
    CATEGORICAL_COLUMNS,
    ID_COLUMNS,
    LABEL,
    MODEL_INPUT_COLUMNS,
    NUMERIC_COLUMNS,
)
from reelhouse.training.metrics import DEFAULT_K, calibration, classifier_scores, ranking_scores
from reelhouse.training.models import LIGHTGBM, RANKERS, FittedRanker
from reelhouse.training.plots import save_calibration_plot, save_feature_importance, save_roc_curves
from reelhouse.training.promotion import USER_COLUMN, Candidate, PromotionDecision, promote_if_better
from reelhouse.training.splits import REQUIRED_COLUMNS, Splits, popularity_scores, split_training_set

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
_EXAMPLE_ROWS = 5
_SIGNATURE_ROWS = 200


# ----------------------------------------------------------------------------- results
def _unprefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {name[len(prefix) + 1 :]: value for name, value in metrics.items() if name.startswith(f"{prefix}_")}


@dataclass
class RankerRun:
    kind: str
    run_id: str
    version: int  # of the registered model
    metrics: dict[str, float]  # as logged: valid_*, test_*, fit_s ...

    @property
    def fit_s(self) -> float:
        return self.metrics["fit_s"]

    @property
    def valid(self) -> dict[str, float]:
        """Validation metrics without their prefix (``auc``, ``ndcg_at_10`` ...)."""
        return _unprefixed("valid", self.metrics)

    @property
    def test(self) -> dict[str, float]:
        return _unprefixed("test", self.metrics)


@dataclass
class TrainResult:
    experiment_id: str
    run_id: str  # the parent ``train_ranker`` run
    registered_model: str
    training_set: dict[str, Any]  # table, version, rows per split
    lineage: dict[str, Any]
    models: dict[str, RankerRun]
    popularity: dict[str, float]  # baseline metrics, ``<split>_<metric>``
    promotion: PromotionDecision | None  # None: trained without the gate (``promote=False``)

    @property
    def popularity_test(self) -> dict[str, float]:
        """The baseline's test metrics without their prefix."""
        return _unprefixed("test", self.popularity)

    @property
    def fit_rows(self) -> int:
        return self.training_set["rows"]["fit"]

    def summary(self) -> dict[str, Any]:
        headline = ("test_auc", f"test_ndcg_at_{DEFAULT_K}", f"test_recall_at_{DEFAULT_K}", "test_logloss", "fit_s")
        return {
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "registered_model": self.registered_model,
            "training_set": self.training_set,
            "lineage": self.lineage,
            "models": {
                kind: {"version": run.version, "run_id": run.run_id, **{k: run.metrics.get(k) for k in headline}}
                for kind, run in self.models.items()
            },
            "popularity": {k: v for k, v in self.popularity.items() if k.startswith("test_")},
            "promotion": None if self.promotion is None else self.promotion.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(_json_safe(self.summary()), sort_keys=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- MLflow logging
def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def _signature(pipeline: Pipeline, sample: pd.DataFrame) -> ModelSignature:
    """Inputs from the column contract (a sample cannot tell an all-missing string column from a
    numeric one), outputs inferred from the model's probabilities on the sample."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [ColSpec("double", c, required=False) for c in NUMERIC_COLUMNS]
        + [ColSpec("string", c, required=False) for c in CATEGORICAL_COLUMNS]
    )
    outputs = infer_signature(sample, pipeline.predict_proba(sample)).outputs
    return ModelSignature(inputs=inputs, outputs=outputs)


def _pip_requirements(kind: str) -> list[str]:
    # Stated rather than inferred: inference loads the model in a subprocess, seconds per model.
    import importlib.metadata as metadata

    packages = ["scikit-learn", "skops", "pandas", "numpy"] + (["lightgbm"] if kind == LIGHTGBM else [])
    return [f"{name}=={metadata.version(name)}" for name in packages]


def _skops_trusted_types(pipeline: Pipeline) -> list[str]:
    """The types skops does not trust by default in our own pipeline (LightGBM's classes, ...)."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))


def _log_plots(fitted: FittedRanker, test: pd.DataFrame, probabilities: np.ndarray, popularity: np.ndarray) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        labels = test[LABEL].to_numpy()
        curves = {fitted.kind: probabilities, "popularity": popularity}
        save_roc_curves(folder / "roc_test.png", labels, curves, f"{fitted.kind}: ROC (test)")
        save_calibration_plot(
            folder / "calibration_test.png", calibration(labels, probabilities), f"{fitted.kind}: calibration (test)"
        )
        save_feature_importance(
            folder / "feature_importance.png", fitted.importance, f"{fitted.kind}: feature importance"
        )
        mlflow.log_artifacts(tmp, "plots")
    importance = fitted.importance.sort_values(ascending=False).rename_axis("feature").reset_index()
    mlflow.log_text(importance.to_csv(index=False), "feature_importance.csv")


def _train_and_log(
    kind: str,
    splits: Splits,
    config: ReelhouseConfig,
    tags: Mapping[str, str],
    run_params: Mapping[str, Any],
    popularity: Mapping[str, np.ndarray],
    popularity_metrics: Mapping[str, float],
) -> RankerRun:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    name = config.training.registered_model
    with mlflow.start_run(run_name=kind, nested=True, tags={**tags, "model_kind": kind}) as run:
        log.info("fitting %s on %d rows", kind, len(splits.fit))
        fitted = RANKERS[kind](splits.fit, splits.valid, config.training)
        metrics: dict[str, float] = {"fit_s": fitted.fit_s, **fitted.fit_metrics}
        probabilities: dict[str, np.ndarray] = {}
        for split_name, part in (("valid", splits.valid), ("test", splits.test)):
            probabilities[split_name] = fitted.pipeline.predict_proba(part.loc[:, list(MODEL_INPUT_COLUMNS)])[:, 1]
            scores = classifier_scores(part[USER_COLUMN], part[LABEL], probabilities[split_name])
            metrics.update(_prefixed(split_name, scores))
        ndcg = f"test_ndcg_at_{DEFAULT_K}"
        metrics[f"{ndcg}_over_popularity"] = metrics[ndcg] - popularity_metrics[ndcg]
        log.info(
            "%s: test auc %.4f, ndcg@%d %.4f (popularity %.4f), fitted in %.1f s",
            kind,
            metrics["test_auc"],
            DEFAULT_K,
            metrics[ndcg],
            popularity_metrics[ndcg],
            fitted.fit_s,
        )

        mlflow.log_params({**run_params, **fitted.params})
        _log_plots(fitted, splits.test, probabilities["test"], popularity["test"])
        sample = splits.valid.loc[:, list(MODEL_INPUT_COLUMNS)].head(_SIGNATURE_ROWS)
        info = mlflow.sklearn.log_model(
            fitted.pipeline,
            name=MODEL_ARTIFACT,
            signature=_signature(fitted.pipeline, sample),
            input_example=sample.head(_EXAMPLE_ROWS),
            registered_model_name=name,
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=_skops_trusted_types(fitted.pipeline),
            pip_requirements=_pip_requirements(kind),
            tags={"model_kind": kind},
        )
        mlflow.log_metrics(metrics, model_id=info.model_id)
        version = int(info.registered_model_version)
        client = MlflowClient()
        client.set_model_version_tag(name, str(version), "model_kind", kind)
        for key in (k for k in tags if k.startswith("lineage.") or k in ("git_commit", "config_hash")):
            client.set_model_version_tag(name, str(version), key, tags[key])
        log.info("%s registered as %s version %d (run %s)", kind, name, version, run.info.run_id)
        return RankerRun(kind, run.info.run_id, version, metrics)


def train_rankers(
    config: ReelhouseConfig,
    training_set: pd.DataFrame | pa.Table,
    lineage: Mapping[str, Any],
    kinds: Sequence[str] | None = None,
    promote: bool = True,
) -> TrainResult:
    """Fit, measure, log and register the rankers ``kinds`` (default: all of :data:`RANKERS`) on
    ``training_set``, then, with ``promote``, run the promotion gate over them.

    ``training_set`` holds rows of ``config.training.table`` (every split); ``lineage`` maps the
    Delta tables it came from, itself included, to the versions read (``{"training_set": 3,
    "silver_events": 12, ...}``) and is recorded on every run. Without ``promote`` the versions
    are only registered: :func:`reelhouse.training.promotion.promote_versions` gates them later
    (the daily DAG trains each kind in a task of its own, then promotes in one step).
    """
    import mlflow

    kinds = list(RANKERS) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [kind for kind in kinds if kind not in RANKERS]
    if unknown or not kinds:
        raise ReelhouseError(f"unknown ranker kinds {unknown}; expected some of {sorted(RANKERS)}")
    training = config.training
    splits = split_training_set(training_set, training)
    experiment_id = configure_mlflow(config)
    table, table_version = training.table, lineage.get(training.table)
    tags = {**lineage_tags(config, lineage), "training_set_table": table}
    if table_version is not None:
        tags["training_set_version"] = str(table_version)
    rows = splits.rows()
    run_params = {
        "training_set_table": table,
        "training_set_version": table_version,
        **{f"rows_{name}": count for name, count in rows.items()},
        "max_fit_rows": training.max_fit_rows,
        "seed": training.seed,
        "model_inputs": len(MODEL_INPUT_COLUMNS),
    }

    popularity = {"valid": popularity_scores(splits.valid), "test": popularity_scores(splits.test)}
    popularity_metrics: dict[str, float] = {}
    for split_name, part in (("valid", splits.valid), ("test", splits.test)):
        scores = ranking_scores(part[USER_COLUMN], part[LABEL], popularity[split_name])
        popularity_metrics.update(_prefixed(split_name, scores))

    nested = mlflow.active_run() is not None
    with mlflow.start_run(experiment_id=experiment_id, run_name="train_ranker", tags=tags, nested=nested) as parent:
        mlflow.log_params(run_params)
        mlflow.log_metrics(_prefixed("popularity", popularity_metrics))
        mlflow.log_dict(config_dump(config), "config.json")
        runs = {
            kind: _train_and_log(kind, splits, config, tags, run_params, popularity, popularity_metrics)
            for kind in kinds
        }
        decision = None
        if promote:
            metric = training.promotion_metric
            candidates = [Candidate(run.kind, run.version, run.run_id, run.metrics[metric]) for run in runs.values()]
            decision = promote_if_better(config, candidates, splits.test, parent_run_id=parent.info.run_id)
            mlflow.set_tags(
                {"promotion.decision": decision.decision, "promotion.champion_version": str(decision.champion_version)}
            )

    return TrainResult(
        experiment_id=experiment_id,
        run_id=parent.info.run_id,
        registered_model=training.registered_model,
        training_set={"table": table, "version": table_version, "rows": rows},
        lineage=dict(lineage),
        models=runs,
        popularity=popularity_metrics,
        promotion=decision,
    )


# ----------------------------------------------------------------------------- from the lake
def recorded_lineage(lake: Lake, table: str, version: int) -> dict[str, int]:
    """The input versions recorded by the build that wrote ``table`` as of ``version``, plus ``{table: version}``.

    Like :func:`reelhouse.training.dataset.training_set_lineage`, which answers for the newest
    build, but for any version (``--version`` trains on an older one): the newest commit at or
    before ``version`` that records them. Commits without them (compaction, checkpoints) do not
    change the rows.
    """
    # The builder's module needs pyspark; only its metadata key is wanted here.
    from reelhouse.training.dataset import INPUT_VERSIONS_KEY

    for commit in lake.history(table):  # newest first
        if commit.get("version", version) > version:
            continue
        recorded = commit_metadata(commit).get(INPUT_VERSIONS_KEY)
        if recorded:
            return {**{name: int(v) for name, v in json.loads(recorded).items()}, table: version}
    raise LakeError(
        f"{table} has no commit at or before version {version} recording its input versions; "
        "build it with jobs/build_training_set.py"
    )


def read_training_set(config: ReelhouseConfig, version: int | None = None) -> tuple[pa.Table, dict[str, int]]:
    """The rows rankers need of ``training.table`` at ``version`` (default: current, pinned before
    reading so lineage and rows agree) and the lineage its build recorded."""
    table = config.training.table
    lake = Lake(config.lake)
    version = lake.version(table) if version is None else version
    schema_names = set(pa.schema(lake.snapshot(table, version).schema().to_arrow()).names)
    wanted = [c for c in (*ID_COLUMNS, *REQUIRED_COLUMNS) if c in schema_names]
    rows = lake.to_arrow(table, version=version, columns=list(dict.fromkeys(wanted)))
    lineage = recorded_lineage(lake, table, version)
    log.info("read %s v%d: %d rows; lineage %s", table, version, rows.num_rows, lineage)
    return rows, lineage


def train_from_lake(
    config: ReelhouseConfig,
    table: str | None = None,
    version: int | None = None,
    kinds: Sequence[str] | None = None,
    promote: bool = True,
) -> TrainResult:
    """Train on the training-set Delta table ``table`` (default ``training.table``) at ``version``
    (default: its current version); ``kinds`` and ``promote`` as in :func:`train_rankers`."""
    if table is not None and table != config.training.table:
        config = config.model_copy(update={"training": config.training.model_copy(update={"table": table})})
    rows, lineage = read_training_set(config, version)
    return train_rankers(config, rows, lineage, kinds, promote)
