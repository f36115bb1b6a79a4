"""Rankers trained, logged and registered in a real MLflow store (SQLite + file artifacts), and the
promotion gate deciding the registry aliases.

The synthetic training set has a label driven by two features (topic affinity, completion rate)
and one category, so a model that learns anything beats chance clearly; the second training
fits on shuffled labels and is scored on the same test rows, so it cannot honestly beat the
first one's champion.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import CommitProperties, write_deltalake

from reelhouse.config import ReelhouseConfig
from reelhouse.lake.delta import Lake
from reelhouse.training.columns import CATEGORICAL_COLUMNS, LABEL, MODEL_INPUT_COLUMNS, NUMERIC_COLUMNS, SPLIT
from reelhouse.training.dataset import INPUT_VERSIONS_KEY
from reelhouse.training.models import LIGHTGBM, LOGISTIC_REGRESSION
from reelhouse.training.promotion import CHALLENGER, CHAMPION, Candidate, promote_if_better
from reelhouse.training.ranker import TrainResult, train_from_lake, train_rankers
from tests.integration.conftest import build_test_config

pytestmark = pytest.mark.integration

ROWS = 3_000
MODEL = "reelhouse-ranker"


def recorded(metadata: dict[str, str]) -> CommitProperties:
    """Commit metadata as the lake stores it (delta-spark's userMetadata, JSON); written with
    delta-rs here so these tests need no SparkSession."""
    return CommitProperties(custom_metadata={"userMetadata": json.dumps(metadata)})


def synthetic_training_set(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.gamma(2.0, 1.0, ROWS) for name in NUMERIC_COLUMNS})
    frame["user_topic_affinity_7d"] = rng.uniform(0, 1, ROWS)
    frame["video_completion_rate_1d"] = rng.uniform(0, 1, ROWS)
    frame["position"] = rng.integers(0, 8, ROWS).astype(float)
    for name in CATEGORICAL_COLUMNS:
        frame[name] = rng.choice(["a", "b", "c", None], ROWS).astype(object)
    frame["device_os"] = rng.choice(["android", "ios"], ROWS).astype(object)
    frame.loc[rng.random(ROWS) < 0.1, "video_like_rate_1d"] = np.nan  # gaps the models must take
    logit = 4.0 * frame["user_topic_affinity_7d"] + 3.0 * frame["video_completion_rate_1d"] - 3.5
    logit += np.where(frame["device_os"] == "ios", 0.7, 0.0)
    frame[LABEL] = (rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame["user_id"] = [f"u{i % 150}" for i in range(ROWS)]
    frame["video_id"] = [f"v{i}" for i in range(ROWS)]
    frame["request_id"] = [f"r{i // 8}" for i in range(ROWS)]
    frame["impression_time"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(ROWS), unit="min")
    frame[SPLIT] = np.select([np.arange(ROWS) < 2_100, np.arange(ROWS) < 2_550], ["train", "valid"], "test")
    return frame


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ReelhouseConfig:
    root = tmp_path_factory.mktemp("ranker")
    config = build_test_config(root)
    return config.model_copy(
        update={
            "mlflow": config.mlflow.model_copy(
                update={
                    "tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                    "artifact_root": str(root / "artifacts"),
                }
            ),
            "training": config.training.model_copy(
                update={
                    "max_fit_rows": 1_500,  # below the 2,100 train rows: the seeded sample is used
                    "lgbm_params": {
                        "n_estimators": 60,
                        "learning_rate": 0.1,
                        "num_leaves": 15,
                        "min_child_samples": 20,
                        "n_jobs": 1,  # OpenMP threads wait on each other on a busy 2-core test machine
                    },
                    "lr_params": {"C": 1.0, "max_iter": 200},
                }
            ),
        }
    )


@pytest.fixture(scope="module")
def training_set() -> pd.DataFrame:
    return synthetic_training_set()


@pytest.fixture(scope="module")
def first(config: ReelhouseConfig, training_set: pd.DataFrame) -> TrainResult:
    return train_rankers(config, training_set, {"training_set": 3, "silver_events": 12, "video_features": 5})


@pytest.fixture(scope="module")
def second(config: ReelhouseConfig, training_set: pd.DataFrame, first: TrainResult) -> tuple[TrainResult, dict]:
    """Train again through the lake, on shuffled training labels; returns the result and the aliases after it."""
    worse = training_set.copy()
    train = worse[SPLIT] == "train"
    worse.loc[train, LABEL] = np.random.default_rng(5).permutation(worse.loc[train, LABEL].to_numpy())
    lake = Lake(config.lake)
    write_deltalake(
        lake.uri(config.training.table),
        pa.Table.from_pandas(worse, preserve_index=False),
        commit_properties=recorded({INPUT_VERSIONS_KEY: json.dumps({"silver_events": 13, "video_features": 6})}),
    )
    result = train_from_lake(config)
    from mlflow import MlflowClient

    return result, dict(MlflowClient().get_registered_model(MODEL).aliases)


def test_both_rankers_are_registered_and_lightgbm_beats_chance_and_popularity(first: TrainResult):
    assert set(first.models) == {LOGISTIC_REGRESSION, LIGHTGBM}
    assert sorted(run.version for run in first.models.values()) == [1, 2]
    lightgbm = first.models[LIGHTGBM].metrics
    assert lightgbm["test_auc"] > 0.7
    assert first.popularity["test_ndcg_at_10"] < lightgbm["test_ndcg_at_10"]
    assert lightgbm["test_ndcg_at_10_over_popularity"] == pytest.approx(
        lightgbm["test_ndcg_at_10"] - first.popularity["test_ndcg_at_10"]
    )
    for run in first.models.values():
        for split in ("valid", "test"):
            assert {f"{split}_{m}" for m in ("auc", "logloss", "ece", "ndcg_at_10", "recall_at_10")} <= set(run.metrics)
        assert run.metrics["fit_s"] > 0
    assert first.training_set["rows"] == {"train": 2_100, "fit": 1_500, "valid": 450, "test": 450}
    assert first.fit_rows == 1_500 and first.popularity_test["ndcg_at_10"] == first.popularity["test_ndcg_at_10"]
    assert first.models[LIGHTGBM].test["auc"] == lightgbm["test_auc"]


def test_runs_carry_params_metrics_lineage_and_plots(first: TrainResult):
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(first.models[LIGHTGBM].run_id)
    assert run.data.tags["mlflow.parentRunId"] == first.run_id
    assert run.data.tags["lineage.silver_events"] == "12" and run.data.tags["training_set_version"] == "3"
    assert len(run.data.tags["config_hash"]) == 64
    assert run.data.params["rows_fit"] == "1500" and run.data.params["max_fit_rows"] == "1500"
    assert run.data.params["num_leaves"] == "15"
    assert run.data.metrics["test_auc"] == pytest.approx(first.models[LIGHTGBM].metrics["test_auc"])
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"roc_test.png", "calibration_test.png", "feature_importance.png"}
    local = Path(client.download_artifacts(run.info.run_id, "plots/roc_test.png"))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parent = client.get_run(first.run_id)
    assert "popularity_test_ndcg_at_10" in parent.data.metrics
    version = client.get_model_version(MODEL, str(first.models[LIGHTGBM].version))
    assert version.tags["model_kind"] == LIGHTGBM and version.run_id == run.info.run_id


def test_first_training_promotes_its_better_model(first: TrainResult):
    decision = first.promotion
    best = max(first.models.values(), key=lambda r: r.metrics["test_auc"])
    assert decision.promoted and decision.reason == "no champion yet"
    assert decision.champion_version == best.version
    assert decision.challenger_version == ({1, 2} - {best.version}).pop()


def test_champion_loads_as_pyfunc_and_predicts_probabilities(first: TrainResult, training_set: pd.DataFrame):
    import mlflow.pyfunc

    from reelhouse.training.models import model_inputs

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    rows = model_inputs(training_set.head(20))
    probabilities = np.asarray(model.predict(rows))
    assert probabilities.shape == (20, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_worse_candidate_becomes_challenger_and_the_champion_stays(first: TrainResult, second):
    result, aliases = second
    decision = result.promotion
    assert not decision.promoted and decision.decision == "kept_champion"
    assert int(aliases[CHAMPION]) == first.promotion.champion_version
    assert int(aliases[CHALLENGER]) == decision.candidate_version
    assert decision.candidate_version in {run.version for run in result.models.values()}
    assert decision.previous_champion_version == first.promotion.champion_version
    # Same test rows, same metric: the champion's score is the one it had when it was trained.
    champion_run = next(r for r in first.models.values() if r.version == first.promotion.champion_version)
    assert decision.previous_champion_score == pytest.approx(champion_run.metrics["test_auc"])
    assert decision.candidate_score < decision.previous_champion_score

    from mlflow import MlflowClient

    client = MlflowClient()
    tags = client.get_run(decision.candidate_run_id).data.tags
    assert tags["promotion.decision"] == "kept_champion"
    assert float(tags["promotion.previous_champion_score"]) == pytest.approx(decision.previous_champion_score)
    assert float(tags["promotion.candidate_score"]) == pytest.approx(decision.candidate_score)
    logged = json.loads(Path(client.download_artifacts(result.run_id, "promotion.json")).read_text())
    assert logged["decision"] == "kept_champion" and logged["metric"] == "test_auc"
    assert logged["margin"] == pytest.approx(0.001)


def test_lineage_comes_from_the_training_set_commit(second):
    result, _ = second
    assert result.lineage == {"silver_events": 13, "video_features": 6, "training_set": 0}
    assert result.training_set["version"] == 0
    from mlflow import MlflowClient

    tags = MlflowClient().get_run(result.run_id).data.tags
    assert tags["lineage.video_features"] == "6" and tags["training_set_table"] == "training_set"
    assert json.loads(result.to_json())["promotion"]["decision"] == "kept_champion"


def test_a_champion_that_cannot_score_the_test_set_is_replaced(config, training_set, second):
    from reelhouse.training.splits import split_training_set

    result, _ = second
    test = split_training_set(training_set, config.training).test.drop(columns=[MODEL_INPUT_COLUMNS[0]])
    challenger = result.models[result.promotion.candidate_kind]
    candidate = Candidate(challenger.kind, challenger.version, challenger.run_id, challenger.metrics["test_auc"])
    decision = promote_if_better(config, [candidate], test)
    assert decision.promoted and decision.champion_version == challenger.version
    assert "could not be scored" in decision.reason and decision.previous_champion_score is None


def test_recorded_lineage_is_the_one_of_the_build_that_wrote_the_version(tmp_path: Path):
    from reelhouse.training.ranker import recorded_lineage

    config = build_test_config(tmp_path)
    lake = Lake(config.lake)
    rows = pa.table({"x": [1]})

    def commit(metadata: dict[str, str]) -> None:
        write_deltalake(lake.uri("sets"), rows, mode="overwrite", commit_properties=recorded(metadata))

    commit({INPUT_VERSIONS_KEY: json.dumps({"silver_events": 1})})  # v0: a build
    commit({INPUT_VERSIONS_KEY: json.dumps({"silver_events": 2})})  # v1: the next build
    commit({"reelhouse.maintenance": "compact"})  # v2: same rows, no inputs of its own
    assert recorded_lineage(lake, "sets", 0) == {"silver_events": 1, "sets": 0}
    assert recorded_lineage(lake, "sets", 2) == {"silver_events": 2, "sets": 2}


def test_rankers_trained_apart_are_gated_together(config, training_set, second):
    """The daily DAG's way: each kind trained in a step of its own without the gate, then one promotion."""
    from mlflow import MlflowClient

    from reelhouse.errors import ReelhouseError
    from reelhouse.training.promotion import promote_versions

    lake = Lake(config.lake)
    write_deltalake(
        lake.uri(config.training.table),
        pa.Table.from_pandas(training_set, preserve_index=False),
        mode="overwrite",
        commit_properties=recorded({INPUT_VERSIONS_KEY: json.dumps({"silver_events": 14})}),
    )
    before = dict(MlflowClient().get_registered_model(MODEL).aliases)
    trained = [train_from_lake(config, kinds=[kind], promote=False) for kind in (LIGHTGBM, LOGISTIC_REGRESSION)]
    assert all(result.promotion is None and list(result.models) == [kind]
               for result, kind in zip(trained, (LIGHTGBM, LOGISTIC_REGRESSION)))  # fmt: skip
    assert dict(MlflowClient().get_registered_model(MODEL).aliases) == before  # registered only

    versions = [result.models[kind].version for result, kind in zip(trained, (LIGHTGBM, LOGISTIC_REGRESSION))]
    with pytest.raises(ReelhouseError, match="not trained on one recorded training-set snapshot"):
        promote_versions(config, [versions[0], second[0].models[LIGHTGBM].version])

    decision = promote_versions(config, versions)
    # The champion is a model fitted on shuffled labels: the better of the honest ones beats it.
    scores = {result.models[kind].version: result.models[kind].metrics["test_auc"]
              for result, kind in zip(trained, (LIGHTGBM, LOGISTIC_REGRESSION))}  # fmt: skip
    best, runner_up = sorted(scores, key=scores.get, reverse=True)
    assert decision.promoted and decision.candidate_version == best
    assert decision.previous_champion_version == int(before[CHAMPION])
    aliases = MlflowClient().get_registered_model(MODEL).aliases
    assert (int(aliases[CHAMPION]), int(aliases[CHALLENGER])) == (best, runner_up)
    assert json.loads(decision.to_json())["champion_version"] == best
    logged = [a.path for a in MlflowClient().list_artifacts(decision.candidate_run_id)]
    assert "promotion.json" in logged
