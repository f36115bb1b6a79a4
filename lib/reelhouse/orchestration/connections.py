"""The ``spark_default`` Airflow connection, built from the reelhouse config.

The Spark provider's ``SparkSubmitOperator`` takes the master from this connection. It is handed
to Airflow as the environment variable ``AIRFLOW_CONN_SPARK_DEFAULT`` (JSON), so the master Airflow
uses is always ``spark.master`` of the config: ``local[2]`` from ``conf/local.yaml``, the
``spark://`` URL from ``conf/cluster.example.yaml``. The whole master URL goes in ``host`` without a
port: the provider then uses it as it is.
"""

from __future__ import annotations

import json
from typing import Any

from reelhouse.config import ReelhouseConfig
from reelhouse.orchestration.settings import SPARK_CONN_ID

SPARK_BINARY = "spark-submit"


def connection_env_name(conn_id: str = SPARK_CONN_ID) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def spark_connection(config: ReelhouseConfig) -> dict[str, Any]:
    """The connection as Airflow's JSON form: master URL, client deploy mode, the spark-submit binary.

    Client mode: the jobs read their config file and ``jobs/*.py`` from this machine.
    """
    return {
        "conn_type": "spark",
        "host": config.spark.master,
        "extra": {"deploy-mode": "client", "spark-binary": SPARK_BINARY},
    }


def spark_connection_env(config: ReelhouseConfig, conn_id: str = SPARK_CONN_ID) -> dict[str, str]:
    """``{"AIRFLOW_CONN_SPARK_DEFAULT": <JSON>}`` for the environment of every Airflow process."""
    return {connection_env_name(conn_id): json.dumps(spark_connection(config), sort_keys=True)}


def spark_master(conn_type: str | None, host: str | None, port: int | None) -> str:
    """The master URL the Spark provider derives from a connection (its rule, for detached jobs).

    A ``spark`` connection whose host is a whole URL (or has no port) uses the host as it is; any
    other is ``<conn_type>://<host>[:<port>]``.
    """
    if conn_type == "spark" and host and ("://" in host or not port):
        master = host
    else:
        master = f"{conn_type}://{host or ''}"
    return f"{master}:{port}" if port else master
