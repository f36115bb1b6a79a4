"""Shell commands of the non-Spark steps: the jobs they run and the output Airflow keeps."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys

from reelhouse.orchestration.commands import evaluate_command, maintain_command, promote_command, train_command
from reelhouse.orchestration.settings import project_dir


def test_training_keeps_only_its_json_result_on_stdout_and_its_exit_code():
    command = train_command("/conf/my config.yaml", "lightgbm")

    assert command.startswith("set -o pipefail; ")
    job = project_dir() / "jobs" / "train_ranker.py"
    assert f"{job} --config '/conf/my config.yaml' --models lightgbm --no-promote | tail -n 1" in command


def test_promotion_gates_the_registered_versions_together():
    command = promote_command("/c.yaml", [7, 8])
    assert f"{project_dir() / 'jobs' / 'promote_ranker.py'} --config /c.yaml --versions 7,8 | tail -n 1" in command


def test_pipefail_keeps_a_failing_jobs_exit_code():
    # The same pipeline shape as train_command, with a job that prints then fails.
    job = shlex.join([sys.executable, "-c", "print('partial'); raise SystemExit(2)"])
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {job} | tail -n 1"], capture_output=True, text=True)
    assert result.returncode == 2


def test_evaluation_writes_its_report_where_asked():
    end = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    args = shlex.split(evaluate_command("/c.yaml", "/data/evaluation/2026-11-20", end))

    assert args[0].endswith("reelhouse")
    assert args[1:] == [
        "evaluate", "--config", "/c.yaml", "--end", "2026-11-21T00:00:00+00:00", "--k", "10,20",
        "--output-dir", "/data/evaluation/2026-11-20",
    ]  # fmt: skip


def test_maintenance_runs_the_maintenance_job():
    args = shlex.split(maintain_command("/c.yaml"))
    assert args[1:] == [str(project_dir() / "jobs" / "maintain_tables.py"), "--config", "/c.yaml"]
