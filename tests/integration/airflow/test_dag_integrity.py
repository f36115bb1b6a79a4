"""Every DAG in airflow/dags parses, has no cycle, and carries tags, an owner, retries and docs.

The DagBag is filled in a child process with a private AIRFLOW_HOME, so the test session's
own imports and Airflow's config file stay untouched; the child reports what it parsed as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reelhouse.orchestration.settings import project_dir

pytestmark = pytest.mark.integration

DAGS_FOLDER = project_dir() / "airflow" / "dags"
EXPECTED = {
    "reelhouse_daily": {
        "build_silver": set(),
        "build_features": {"build_silver"},
        "build_training_set": {"build_features"},
        "train_lightgbm": {"build_training_set"},
        "train_logistic_regression": {"build_training_set"},
        "evaluate": {"build_training_set"},
        "promote": {"train_lightgbm", "train_logistic_regression"},
        "build_candidates": {"promote"},
        "materialize_online": {"build_candidates"},
    },
    "reelhouse_hourly": {"build_silver": set(), "build_features": {"build_silver"}},
    "reelhouse_maintenance": {"maintain_tables": set()},
    "reelhouse_streaming": {
        "supervise_ingest_events": set(),
        "lag_ingest_events": {"supervise_ingest_events"},
        "supervise_stream_features": set(),
        "lag_stream_features": {"supervise_stream_features"},
    },
}
# Imported at parse time, these would slow every parse of every DAG file down (or fail it).
HEAVY_MODULES = (
    "pyspark",
    "mlflow",
    "pandas",
    "lightgbm",
    "sklearn",
    "deltalake",
    "confluent_kafka",
    "reelhouse.config",
)

PARSE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.dag_cycle_tester import check_cycle

bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    check_cycle(dag)
    dags[dag_id] = {
        "tags": sorted(dag.tags),
        "owner": dag.owner,
        "doc_md": dag.doc_md,
        "catchup": dag.catchup,
        "timetable": type(dag.timetable).__name__,
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner, "upstream": sorted(t.upstream_task_ids),
                              "operator": type(t).__name__} for t in dag.tasks},
    }
heavy = [m for m in sys.argv[2].split(",") if m in sys.modules]
print(json.dumps({"import_errors": bag.import_errors, "dags": dags, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS_FOLDER), ",".join(HEAVY_MODULES)],
        env=env, cwd=home, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parsed):
    assert parsed["import_errors"] == {}
    assert set(parsed["dags"]) == set(EXPECTED)


def test_dag_files_import_nothing_heavy_at_parse_time(parsed):
    assert parsed["heavy"] == []


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_has_tags_owner_retries_docs_and_its_tasks(parsed, dag_id):
    dag = parsed["dags"][dag_id]
    assert "reelhouse" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["owner"] == "reelhouse"
    assert dag["doc_md"] and dag["doc_md"].lstrip().startswith(f"# {dag_id}")
    assert dag["catchup"] is False
    # Data intervals, so every run has a [start, end) its jobs rebuild.
    assert dag["timetable"] == "CronDataIntervalTimetable"
    assert {task: set(info["upstream"]) for task, info in dag["tasks"].items()} == EXPECTED[dag_id]
    for task, info in dag["tasks"].items():
        assert info["retries"] >= 2, task
        assert info["owner"] == "reelhouse", task


def test_spark_steps_go_through_spark_submit(parsed):
    daily = parsed["dags"]["reelhouse_daily"]["tasks"]
    spark = {task for task, info in daily.items() if info["operator"] == "SparkJobOperator"}
    assert spark == {"build_silver", "build_features", "build_training_set", "build_candidates", "materialize_online"}


def test_the_in_process_daily_flow_runs_the_dags_steps_in_the_dags_order(parsed):
    """orchestration/daily.py (the multi-day loop's flow) follows the DAG: same steps, an order the
    DAG's dependencies allow (``train`` stands for the train_<kind> tasks; ``evaluate`` feeds nothing)."""
    from reelhouse.orchestration.daily import DAILY_STEPS

    tasks = parsed["dags"]["reelhouse_daily"]["tasks"]

    def step(task: str) -> str:
        return "train" if task.startswith("train_") else task

    assert {step(task) for task in tasks} - {"evaluate"} == set(DAILY_STEPS)
    for task, info in tasks.items():
        for upstream in info["upstream"]:
            if task != "evaluate":
                assert DAILY_STEPS.index(step(upstream)) < DAILY_STEPS.index(step(task)), (upstream, task)
