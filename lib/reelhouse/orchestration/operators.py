"""The Spark job operator: ``spark-submit`` of one ``jobs/<job>.py`` through the ``spark_default`` connection.

A :class:`SparkSubmitOperator` whose application is the job's entry point and whose first
arguments are ``--config <file>`` (the Variable / environment / default choice of
:mod:`reelhouse.orchestration.settings`). Before submitting, it loads that config and passes its
``spark.conf`` as ``--conf``: settings such as the driver's memory must be known before the
driver's JVM starts, which is too late for the job's own session builder under spark-submit.
The Kafka source and Delta jars go in the same way, as ``--jars`` or ``--packages`` (the
config's ``spark.jars``), chosen by :func:`reelhouse.jvm.spark_submit_args`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from reelhouse.orchestration.settings import SPARK_CONN_ID, config_template, job_path


class SparkJobOperator(SparkSubmitOperator):
    """Runs ``jobs/<job>.py --config <file> <job_args>`` with spark-submit; ``job_args`` are templated."""

    def __init__(self, *, job: str, job_args: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("conn_id", SPARK_CONN_ID)
        kwargs.setdefault("name", f"reelhouse-{job}")
        super().__init__(
            application=str(job_path(job)),
            application_args=["--config", config_template(), *job_args],
            **kwargs,
        )
        self.job = job

    def execute(self, context: Any) -> None:
        from reelhouse.config import load_config
        from reelhouse.jvm import spark_submit_args

        args = list(self.application_args or [])
        config = load_config(args[args.index("--config") + 1])
        self.conf = {**config.spark.conf, **(self.conf or {})}
        option, value = spark_submit_args(config.spark.jars)
        if option == "--jars":
            self.jars = ",".join(filter(None, [value, self.jars]))
        else:
            self.packages = ",".join(filter(None, [value, self.packages]))
        return super().execute(context)
