"""What ``make airflow`` hands Airflow, and the admin password it prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reelhouse.config import load_config
from reelhouse.orchestration.services import admin_password, airflow_environment
from reelhouse.orchestration.settings import project_dir


def test_airflow_gets_the_project_dags_the_connection_and_the_config(tmp_path):
    config_path = project_dir() / "conf" / "local.yaml"
    config = load_config(config_path, environ={})
    env = airflow_environment(config, config_path, tmp_path / "home", port=18080, base={"PATH": "/usr/bin"})

    assert env["AIRFLOW_HOME"] == str((tmp_path / "home").resolve())
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(project_dir() / "airflow" / "dags")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "18080")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])["host"] == "local[2]"
    assert env["REELHOUSE_CONFIG"] == str(config_path)
    # spark-submit, airflow and reelhouse come from this environment first.
    assert env["PATH"].split(":") == [str(Path(sys.executable).parent), "/usr/bin"]


def test_the_generated_admin_password_is_read_from_airflows_file(tmp_path):
    assert admin_password(tmp_path) is None
    (tmp_path / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "s3cret"}\n')
    assert admin_password(tmp_path) == "s3cret"
