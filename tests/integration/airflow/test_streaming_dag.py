"""The streaming DAG under ``airflow dags test``: it starts a stream and alerts on its lag.

Only ``ingest_events`` is supervised here (``orchestration.streams``), with a lag bound of
zero records (``orchestration.max_stream_lag``, both set through the environment): right after its start the stream has read
nothing of the 300 messages waiting, so the lag task must fail, and fail without retrying.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
from pathlib import Path

import pytest

from reelhouse.orchestration.streams import is_running, pid_file, read_record
from tests.integration.airflow.conftest import airflow_env, migrate
from tests.integration.orchestration.conftest import numbered
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


def test_streaming_dag_starts_the_stream_and_fails_its_lag_check(stream_config, tmp_path):
    config, config_path = stream_config
    produce(config.kafka, config.kafka.events_topic.name, numbered(300))
    home = tmp_path / "airflow"
    home.mkdir()
    env = airflow_env(config, Path(config_path), home)
    env["REELHOUSE__ORCHESTRATION__STREAMS"] = '["ingest_events"]'
    env["REELHOUSE__ORCHESTRATION__MAX_STREAM_LAG"] = "0"
    migrate(env, home)
    when = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    result = subprocess.run(
        [str(Path(env["PATH"].split(":")[0]) / "airflow"), "dags", "test", "reelhouse_streaming", when.isoformat()],
        env=env, cwd=home, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr

    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = 'reelhouse_streaming'")
        states = {task: (state, tries) for task, state, tries in rows}
    assert result.returncode != 0, output[-4000:]  # the run failed: that is the alert
    assert states == {
        "supervise_ingest_events": ("success", 1),
        "lag_ingest_events": ("failed", 1),  # no retry for a stream that is behind
        "supervise_stream_features": ("skipped", 1),
        "lag_stream_features": ("skipped", 0),  # skipped before it ever started
    }, output[-4000:]
    assert "ingest_events is 300 records behind" in output

    record = read_record(pid_file(config, "ingest_events"))
    assert is_running(record)  # started detached: it outlives the task (stopped by the fixture)
    assert record.command[1:3] == ["--master", "local[2]"]  # from the spark_default connection
