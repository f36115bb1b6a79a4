"""
# reelhouse_streaming — supervision of the streaming jobs

Every five minutes, for each long-running stream — **ingest_events** (Kafka → bronze) and
**stream_features** (the speed layer):

1. **supervise_<stream>**: if the stream's process (started by this DAG, detached, with a pid
   file and a log under `<data_dir>/streams/`) is alive, nothing happens; otherwise it is started
   again with `spark-submit` on the master of the `spark_default` connection. Restarting is safe:
   the streams are exactly-once from their checkpoints.
2. **lag_<stream>**: the records of the events topic the stream has not committed yet (the
   broker's end offsets minus the offsets of the last committed micro-batch in its checkpoint).
   Above the bound the task fails at once, without retries: that failure is the alert.

Config (`orchestration` section): `streams` (which streams to supervise; default both) and
`max_stream_lag` (records; default one micro-batch's cap, the stream's `max_offsets_per_trigger`).
The broker must be up (`make stack-up` locally).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag, task

from reelhouse.orchestration.settings import START_DATE, default_args

STREAMS = ("ingest_events", "stream_features")


def _skip_unless_selected(config, stream: str) -> None:  # noqa: ANN001 - a ReelhouseConfig
    from airflow.sdk.exceptions import AirflowSkipException

    if stream not in config.orchestration.streams:
        raise AirflowSkipException(f"{stream} is not in the config's orchestration.streams")


@task
def supervise(stream: str) -> dict:
    from airflow.sdk import BaseHook

    from reelhouse.config import load_config
    from reelhouse.orchestration.connections import spark_master
    from reelhouse.orchestration.settings import SPARK_CONN_ID, config_path
    from reelhouse.orchestration.streams import supervise_stream

    path = config_path()
    config = load_config(path)
    _skip_unless_selected(config, stream)
    try:
        conn = BaseHook.get_connection(SPARK_CONN_ID)
        master = spark_master(conn.conn_type, conn.host, conn.port)
    except Exception:  # no such connection: the config's master, as the connection would say
        master = config.spark.master
    return supervise_stream(config, stream, path, master).to_dict()


@task
def check_lag(stream: str) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from reelhouse.config import load_config
    from reelhouse.orchestration.lag import max_lag_bound, measure_stream_lag
    from reelhouse.orchestration.settings import config_path

    config = load_config(config_path())
    _skip_unless_selected(config, stream)
    bound = max_lag_bound(config, stream)
    lag = measure_stream_lag(config, stream)
    if lag.total > bound:
        raise AirflowFailException(
            f"{stream} is {lag.total:,} records behind {lag.topic} (bound {bound:,}; per partition "
            f"{lag.partitions}): is it running (see its log under <data_dir>/streams/) and keeping up?"
        )
    return lag.to_dict()


@dag(
    dag_id="reelhouse_streaming",
    schedule=CronDataIntervalTimetable("*/5 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=10),
    default_args=default_args(retry_delay=dt.timedelta(seconds=30), execution_timeout=dt.timedelta(minutes=4)),
    tags=["reelhouse", "streaming"],
    doc_md=__doc__,
)
def reelhouse_streaming() -> None:
    for stream in STREAMS:
        supervise.override(task_id=f"supervise_{stream}")(stream) >> check_lag.override(task_id=f"lag_{stream}")(stream)


reelhouse_streaming()
