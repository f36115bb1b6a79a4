"""The Spark job operator hands spark-submit the config's Spark settings and the Kafka/Delta jars."""

from __future__ import annotations

import pytest
import yaml

from reelhouse import jvm
from reelhouse.orchestration import operators
from reelhouse.orchestration.settings import project_dir


@pytest.fixture
def submitted(monkeypatch):
    """What SparkSubmitOperator.execute would submit with, instead of submitting."""
    seen = {}

    def record(self, context):
        seen.update(conf=self.conf, jars=self.jars, packages=self.packages)

    monkeypatch.setattr(operators.SparkSubmitOperator, "execute", record)
    return seen


def write_config(tmp_path, jars: str):
    path = tmp_path / "reelhouse.yaml"
    local = yaml.safe_load((project_dir() / "conf" / "local.yaml").read_text())
    local["spark"]["jars"] = jars
    path.write_text(yaml.safe_dump(local))
    return path


def job_operator(path):
    operator = operators.SparkJobOperator(task_id="build_silver", job="build_silver")
    operator.application_args = ["--config", str(path)]  # what the template renders to
    return operator


def test_resolved_jars_go_in_as_jars(tmp_path, monkeypatch, submitted):
    jars = [tmp_path / "spark-sql-kafka.jar", tmp_path / "delta-spark.jar"]
    monkeypatch.setattr(jvm, "spark_jars", lambda: jars)

    job_operator(write_config(tmp_path, "resolved")).execute({})

    assert submitted["jars"] == ",".join(str(j) for j in jars)
    assert submitted["packages"] is None
    assert submitted["conf"]["spark.driver.memory"] == "3g"  # conf/local.yaml's


def test_packages_mode_lets_spark_resolve_the_coordinates(tmp_path, submitted):
    job_operator(write_config(tmp_path, "packages")).execute({})

    assert submitted["packages"] == ",".join(jvm.spark_packages())
    assert submitted["jars"] is None
