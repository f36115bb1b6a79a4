"""
# reelhouse_daily — the batch layer, once a day

Rebuilds one UTC day (the run's data interval) end to end:

1. **build_silver**: bronze → `silver_events` for the day, after MERGE-ing the dimensions;
2. **build_features**: gold feature tables as of the interval's end;
3. **build_training_set**: impressions of the last `orchestration.training_days` days up to the
   interval's end, with point-in-time features and labels;
4. **train_lightgbm** and **train_logistic_regression**, in parallel: each fits, logs and
   registers its ranker in MLflow on the same training-set snapshot — **evaluate** (offline top-K
   of the baselines, recall sources and pipeline on the events before the interval's end) runs
   beside them;
5. **promote**: the gate over both new versions: `champion` moves only to a version better than
   the current champion on the same test set by `training.promotion_margin`;
6. **build_candidates**: recall candidates per user as of the interval's end;
7. **materialize_online**: the gold features of the interval's end into the online store.

A run triggered without a logical date rebuilds the last whole UTC day before it was triggered.
Every step is idempotent for its interval: the Spark jobs replace the partitions (or the table)
they write, so a retry or a re-run of a day leaves the same rows. The training steps register
new model versions on each run; the gate decides which one serves.

Spark jobs go through `spark-submit` with the `spark_default` connection (built from the
reelhouse config's `spark.master`); the config file is the Variable `reelhouse_config`, else
`$REELHOUSE_CONFIG`, else the project's `conf/local.yaml`.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task

from reelhouse.orchestration.operators import SparkJobOperator
from reelhouse.orchestration.settings import (
    RUN_END,
    RUN_START,
    START_DATE,
    default_args,
    interval_macros,
    training_days,
)

RANKER_KINDS = ("lightgbm", "logistic_regression")


@dag(
    dag_id="reelhouse_daily",
    # Data intervals, not trigger times: each run covers [start, end) of one UTC day.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    user_defined_macros={**interval_macros("day"), "training_days": training_days},
    tags=["reelhouse", "batch"],
    doc_md=__doc__,
)
def reelhouse_daily() -> None:
    silver = SparkJobOperator(
        task_id="build_silver", job="build_silver", job_args=["--start", RUN_START, "--end", RUN_END]
    )
    gold = SparkJobOperator(task_id="build_features", job="build_features", job_args=["--end", RUN_END])
    training_set = SparkJobOperator(
        task_id="build_training_set",
        job="build_training_set",
        job_args=["--days", "{{ training_days() }}", "--end", RUN_END],
    )

    @task.bash
    def train(kind: str) -> str:
        from reelhouse.orchestration.commands import train_command
        from reelhouse.orchestration.settings import config_path

        return train_command(config_path(), kind)

    @task.bash(task_id="evaluate")
    def evaluate(data_interval_start=None, data_interval_end=None, dag_run=None) -> str:  # noqa: ANN001 - context
        from pathlib import Path

        from reelhouse.config import load_config
        from reelhouse.orchestration.commands import evaluate_command
        from reelhouse.orchestration.settings import config_path, run_interval

        path = config_path()
        start, end = run_interval(data_interval_start, data_interval_end, dag_run.run_after, "day")
        # One report per day rebuilt, so a re-run replaces its own report only.
        output = Path(load_config(path).data_dir) / "evaluation" / start.strftime("%Y-%m-%d")
        return evaluate_command(path, output, end)

    @task.bash(task_id="promote")
    def promote(lightgbm: str, logistic_regression: str) -> str:  # one parameter per kind of RANKER_KINDS
        from reelhouse.orchestration.commands import promote_command
        from reelhouse.orchestration.registry import registered_versions
        from reelhouse.orchestration.settings import config_path

        trained = {"lightgbm": lightgbm, "logistic_regression": logistic_regression}
        versions = [v for kind, output in trained.items() for v in registered_versions(output, kind)]
        return promote_command(config_path(), versions)

    candidates = SparkJobOperator(task_id="build_candidates", job="build_candidates", job_args=["--as-of", RUN_END])
    online = SparkJobOperator(
        task_id="materialize_online", job="materialize_online", job_args=["--feature-time", RUN_END]
    )

    trained = {kind: train.override(task_id=f"train_{kind}")(kind) for kind in RANKER_KINDS}
    silver >> gold >> training_set >> [*trained.values(), evaluate()]
    promote(**trained) >> candidates >> online


reelhouse_daily()
