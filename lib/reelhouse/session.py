"""The one SparkSession factory. Jobs call it once; library code receives ``spark`` as a parameter.

Under ``spark-submit`` the master and memory given on the command line win over the config
(the builder only fills what is not set), and so do the jars: ``spark-submit`` must be given
them (``python -m reelhouse.jvm submit-args``), since the driver's JVM is already running.
A session started from Python gets them here. Every session has Delta's SQL extension and
catalog, so ``format("delta")``, ``DeltaTable`` and ``OPTIMIZE``/``VACUUM`` work everywhere.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from reelhouse.config import ReelhouseConfig
from reelhouse.jvm import DELTA_SESSION_CONF, spark_dependency_conf


def spark_session(config: ReelhouseConfig, job_name: str) -> SparkSession:
    # Executors must run the same interpreter (and so the same packages) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(f"{config.spark.app_name}-{job_name}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.ui.enabled", str(config.spark.ui_enabled).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    # Delta replays its log with this many tasks (default 50): a few suit the lake's small logs.
    builder = builder.config("spark.databricks.delta.snapshotPartitions", str(max(2, config.spark.shuffle_partitions)))
    for key, value in DELTA_SESSION_CONF.items():
        builder = builder.config(key, value)
    if not _under_spark_submit():
        builder = builder.master(config.spark.master)
        for key, value in spark_dependency_conf(config.spark.jars).items():
            builder = builder.config(key, value)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _under_spark_submit() -> bool:
    """True under spark-submit: it starts the JVM first and hands this driver its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
