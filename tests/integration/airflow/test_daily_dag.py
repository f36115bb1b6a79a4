"""The daily DAG end to end: ``airflow dags test reelhouse_daily`` on one simulated day.

Everything is real and small: a temporary Airflow home (SQLite), the ``spark_default``
connection from the test config (``local[2]``), spark-submit for every Spark job, a temporary
lake, MLflow store and SQLite online store.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from reelhouse.features.gold import feature_table
from reelhouse.lake import Lake
from reelhouse.online import open_online_store
from reelhouse.speed.online import features_view
from tests.integration.airflow.conftest import airflow_env, load_test_config, migrate, seed_bronze_day, write_test_config

pytestmark = pytest.mark.integration

DAILY_TASKS = {
    "build_silver", "build_features", "build_training_set", "train_rankers", "evaluate", "promote",
    "build_candidates", "materialize_online",
}  # fmt: skip


def test_daily_dag_builds_every_layer_for_its_day(tmp_path: Path) -> None:
    # A run whose logical date is today 00:00 UTC covers yesterday (the data interval [start, end)),
    # so the online rows loaded for `end` are well within their TTL.
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=1)
    config_path = write_test_config(tmp_path / "lake-root")
    config = load_test_config(config_path)
    bronze_rows = seed_bronze_day(config, start, events=30_000)
    assert bronze_rows > 20_000

    home = tmp_path / "airflow"
    home.mkdir()
    env = airflow_env(config, config_path, home)
    migrate(env, home)
    started = time.monotonic()
    with open(tmp_path / "dags-test.log", "w") as out:
        result = subprocess.run(
            [str(Path(env["PATH"].split(":")[0]) / "airflow"), "dags", "test", "reelhouse_daily", end.isoformat()],
            env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, timeout=900,
        )  # fmt: skip
    took = time.monotonic() - started
    log = (tmp_path / "dags-test.log").read_text(errors="replace")
    assert result.returncode == 0, log[-6000:]

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
    print(f"airflow dags test reelhouse_daily took {took:.0f} s")
