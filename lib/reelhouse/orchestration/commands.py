"""Shell commands of the steps that are not Spark jobs: training, promotion, offline evaluation, maintenance.

They run the same entry points as by hand (``jobs/*.py``, the ``reelhouse`` CLI) with the
interpreter that runs Airflow. Each job prints its JSON result on its last line of standard
output, which Airflow keeps as the task's return value (XCom).
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Sequence
from pathlib import Path

from reelhouse.orchestration.settings import job_path, python_executable, venv_bin


def _python_job(job: str, *args: str) -> str:
    return shlex.join([python_executable(), str(job_path(job)), *args])


def _result_only(command: str) -> str:
    """Only the job's JSON result reaches standard output.

    Its logs go to standard error, which Airflow shows as well; ``tail`` keeps the result last
    whatever else a library writes to standard output, and ``pipefail`` keeps the job's exit code.
    """
    return f"set -o pipefail; {command} | tail -n 1"


def train_command(config_path: str, kind: str) -> str:
    """Train and register one ranker kind without the gate (the promote step gates them together)."""
    return _result_only(_python_job("train_ranker", "--config", config_path, "--models", kind, "--no-promote"))


def promote_command(config_path: str, versions: Sequence[int]) -> str:
    """Gate the versions the training steps registered against the champion."""
    return _result_only(
        _python_job("promote_ranker", "--config", config_path, "--versions", ",".join(str(v) for v in versions))
    )


def evaluate_command(config_path: str, output_dir: str | Path, end: dt.datetime | None = None, k: str = "10,20") -> str:
    """Offline top-K evaluation of the baselines, recall sources and pipeline, report in ``output_dir``."""
    window = [] if end is None else ["--end", end.isoformat()]
    return shlex.join(
        [venv_bin("reelhouse"), "evaluate", "--config", config_path, *window, "--k", k, "--output-dir", str(output_dir)]
    )


def maintain_command(config_path: str) -> str:
    """Compaction, VACUUM and checkpoints of every table (exit code 1 if a table failed)."""
    return _python_job("maintain_tables", "--config", config_path)
