"""The Spark provider reads our spark_default connection as the master of the config.

Checked in a child process with a private AIRFLOW_HOME: the connection comes only from the
``AIRFLOW_CONN_SPARK_DEFAULT`` variable, as ``make airflow`` sets it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reelhouse.config import load_config
from reelhouse.orchestration.connections import spark_connection_env
from reelhouse.orchestration.settings import project_dir

pytestmark = pytest.mark.integration

SUBMIT = r"""
import json
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

hook = SparkSubmitHook(conn_id="spark_default", name="reelhouse-build_silver", conf={"spark.driver.memory": "1g"})
print(json.dumps(hook._build_spark_submit_command("jobs/build_silver.py")))
"""


@pytest.mark.parametrize(
    ("config_file", "master"),
    [("local.yaml", "local[2]"), ("cluster.example.yaml", "spark://spark-master.internal:7077")],
)
def test_spark_submit_gets_the_master_of_the_config(tmp_path, config_file, master):
    config = load_config(project_dir() / "conf" / config_file, environ={})
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **spark_connection_env(config)}

    result = subprocess.run([sys.executable, "-c", SUBMIT], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    command = json.loads(result.stdout.strip().splitlines()[-1])
    assert command == [
        "spark-submit", "--master", master, "--conf", "spark.driver.memory=1g", "--name", "reelhouse-build_silver",
        "--deploy-mode", "client", "jobs/build_silver.py",
    ]  # fmt: skip
