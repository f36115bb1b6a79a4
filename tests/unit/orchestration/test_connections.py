"""The spark_default connection comes from spark.master of the config, in Airflow's JSON form."""

from __future__ import annotations

import json

import pytest

from reelhouse.config import load_config
from reelhouse.orchestration.connections import spark_connection, spark_connection_env, spark_master
from reelhouse.orchestration.settings import project_dir

CONF = project_dir() / "conf"


def test_local_config_gives_a_local_two_core_master():
    env = spark_connection_env(load_config(CONF / "local.yaml", environ={}))

    assert list(env) == ["AIRFLOW_CONN_SPARK_DEFAULT"]
    connection = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert connection == {
        "conn_type": "spark",
        "host": "local[2]",
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    }


def test_cluster_config_gives_its_spark_url():
    connection = spark_connection(load_config(CONF / "cluster.example.yaml", environ={}))

    assert connection["host"] == "spark://spark-master.internal:7077"
    assert "port" not in connection  # the whole URL is the host: the provider takes it as it is


def test_an_environment_override_of_the_master_reaches_the_connection():
    config = load_config(CONF / "local.yaml", environ={"REELHOUSE__SPARK__MASTER": "spark://127.0.0.1:17077"})

    assert spark_connection(config)["host"] == "spark://127.0.0.1:17077"


@pytest.mark.parametrize(
    ("conn_type", "host", "port", "master"),
    [
        ("spark", "local[2]", None, "local[2]"),  # ours: a whole master URL in host
        ("spark", "spark://h:7077", None, "spark://h:7077"),
        ("spark", "yarn", None, "yarn"),
        ("spark", "k8s://https://api:443", None, "k8s://https://api:443"),
        ("spark", "h", 7077, "spark://h:7077"),  # host and port typed in the UI
        ("k8s", "https://api", 443, "k8s://https://api:443"),  # from a URI: scheme in conn_type
    ],
)
def test_master_follows_the_providers_rule(conn_type, host, port, master):
    assert spark_master(conn_type, host, port) == master
