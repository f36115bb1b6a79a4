"""
# reelhouse_hourly — gold features every hour

For the run's data interval (one UTC hour):

1. **build_silver**: bronze → `silver_events` for the hour (the dimensions refreshed first);
2. **build_features**: gold feature tables as of the hour's end, the feature time training sets
   and the online store read.

Both replace what they write for their interval, so re-runs are safe (a run triggered without a
logical date rebuilds the last whole hour before it). Events that arrive after
their hour was built are picked up by `reelhouse_daily`, which rebuilds the whole day within the
silver late-data allowance.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag

from reelhouse.orchestration.operators import SparkJobOperator
from reelhouse.orchestration.settings import RUN_END, RUN_START, START_DATE, default_args, interval_macros


@dag(
    dag_id="reelhouse_hourly",
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    user_defined_macros=interval_macros("hour"),
    tags=["reelhouse", "batch", "features"],
    doc_md=__doc__,
)
def reelhouse_hourly() -> None:
    silver = SparkJobOperator(
        task_id="build_silver", job="build_silver", job_args=["--start", RUN_START, "--end", RUN_END]
    )
    gold = SparkJobOperator(task_id="build_features", job="build_features", job_args=["--end", RUN_END])
    silver >> gold


reelhouse_hourly()
