"""The daily DAG end to end: ``airflow dags test reelhouse_daily`` on one simulated day.

Everything is real and small: a temporary Airflow home (SQLite), the ``spark_default``
connection from the test config (``local[2]``), spark-submit for every Spark job, a temporary
lake, MLflow store and SQLite online store. The run itself is the package fixture ``daily_run``
(conftest.py), which the browser test looks at too.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from reelhouse.features.gold import feature_table
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.online import open_online_store
from tests.integration.airflow.conftest import DailyRun

pytestmark = pytest.mark.integration

DAILY_TASKS = {
    "build_silver", "build_features", "build_training_set", "train_lightgbm", "train_logistic_regression", "evaluate",
    "promote",
    "build_candidates", "materialize_online",
}  # fmt: skip


def test_daily_dag_builds_every_layer_for_its_day(daily_run: DailyRun) -> None:
    config, home, start, end = daily_run.config, daily_run.home, daily_run.start, daily_run.end
    assert daily_run.bronze_rows > 20_000
    assert daily_run.returncode == 0, daily_run.log[-6000:]

    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'reelhouse_daily'"))
        interval = db.execute(
            "SELECT data_interval_start, data_interval_end FROM dag_run WHERE dag_id = 'reelhouse_daily'"
        ).fetchone()
    assert states == dict.fromkeys(DAILY_TASKS, "success"), states
    assert [dt.datetime.fromisoformat(v).replace(tzinfo=dt.UTC) for v in interval] == [start, end]

    lake = Lake(config.lake)
    video = lake.to_arrow(feature_table("video").name, columns=["video_id", "feature_time"])
    assert video.num_rows > 0
    assert set(video.column("feature_time").to_pylist()) == {end}
    training = lake.to_arrow(config.training.table, columns=["split", "label"])
    assert training.num_rows > 1_000
    assert set(training.column("split").to_pylist()) == {"train", "valid", "test"}
    candidates = lake.to_arrow(config.recall.candidates_table, columns=["user_id"])
    assert candidates.num_rows > 0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri, registry_uri=config.mlflow.tracking_uri)
    model = client.get_registered_model(config.training.registered_model)
    assert "champion" in model.aliases

    store = open_online_store(config.online_store)
    try:
        some_videos = video.column("video_id").to_pylist()[:20]
        rows = store.read(features_view("video"), some_videos)
    finally:
        store.close()
    assert any(row is not None and row.feature_time == end for row in rows.values())
    assert (Path(config.data_dir) / "evaluation" / start.strftime("%Y-%m-%d") / "report.md").exists()
    print(f"airflow dags test reelhouse_daily took {daily_run.took_s:.0f} s")
