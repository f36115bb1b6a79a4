"""Where the DAGs find the project, its jobs and the config file; the defaults every task shares.

Standard library only: DAG files import this module each time Airflow parses them.

The config file of a task is, in order: the Airflow Variable ``reelhouse_config``, the environment
variable ``REELHOUSE_CONFIG``, then ``conf/local.yaml`` of the project. A relative path is taken
from the project directory, so a task finds it whatever directory it runs in.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

CONFIG_VARIABLE = "reelhouse_config"
CONFIG_ENV = "REELHOUSE_CONFIG"
PROJECT_DIR_ENV = "REELHOUSE_PROJECT_DIR"
SPARK_CONN_ID = "spark_default"
OWNER = "reelhouse"
START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def project_dir() -> Path:
    """The project checkout: ``$REELHOUSE_PROJECT_DIR``, else the one this package is installed from."""
    configured = os.environ.get(PROJECT_DIR_ENV)
    return Path(configured).resolve() if configured else Path(__file__).resolve().parents[3]


def job_path(job: str) -> Path:
    """``jobs/<job>.py`` of the project (the spark-submit entry points)."""
    return project_dir() / "jobs" / f"{job}.py"


def python_executable() -> str:
    """The interpreter running Airflow, whose environment has reelhouse and its dependencies."""
    return sys.executable


def venv_bin(name: str) -> str:
    """A console script installed beside the interpreter (``spark-submit``, ``reelhouse``, ``airflow``)."""
    return str(Path(sys.executable).parent / name)


def default_config_path() -> str:
    """``$REELHOUSE_CONFIG`` or the project's ``conf/local.yaml``, as an absolute path."""
    return _absolute(os.environ.get(CONFIG_ENV) or "conf/local.yaml")


def config_path() -> str:
    """The config file of a running task: the Variable, the environment, or the default.

    Call it inside a task, never while a DAG file is parsed (a Variable lookup is a round trip).
    """
    from airflow.sdk import Variable

    return _absolute(Variable.get(CONFIG_VARIABLE, default=None) or default_config_path())


def config_template() -> str:
    """The same choice as :func:`config_path` as a Jinja expression, for templated operator fields."""
    return f"{{{{ var.value.get({CONFIG_VARIABLE!r}, {default_config_path()!r}) }}}}"


def _absolute(path: str) -> str:
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (project_dir() / candidate).resolve())


PERIODS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


def run_interval(
    data_interval_start: dt.datetime | None,
    data_interval_end: dt.datetime | None,
    run_after: dt.datetime,
    period: str,
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` a run rebuilds: its data interval, or, for a run triggered without a
    logical date (it has none), the last whole ``period`` (``hour`` or ``day``, UTC) before it."""
    if data_interval_start is not None and data_interval_end is not None and data_interval_end > data_interval_start:
        return data_interval_start, data_interval_end
    end = run_after.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    if period == "day":
        end = end.replace(hour=0)
    return end - PERIODS[period], end


def interval_macros(period: str) -> dict[str, Any]:
    """``run_start(...)`` / ``run_end(...)`` for templates: the run's interval bounds in ISO 8601."""

    def run_start(start: dt.datetime | None, end: dt.datetime | None, run_after: dt.datetime) -> str:
        return run_interval(start, end, run_after, period)[0].isoformat()

    def run_end(start: dt.datetime | None, end: dt.datetime | None, run_after: dt.datetime) -> str:
        return run_interval(start, end, run_after, period)[1].isoformat()

    return {"run_start": run_start, "run_end": run_end}


def training_days() -> int:
    """``orchestration.training_days`` of the task's config (a template macro: called while a task
    renders its arguments, never while the DAG file is parsed)."""
    from reelhouse.config import load_config

    return load_config(config_path()).orchestration.training_days


RUN_START = "{{ run_start(data_interval_start, data_interval_end, dag_run.run_after) }}"
RUN_END = "{{ run_end(data_interval_start, data_interval_end, dag_run.run_after) }}"


def default_args(**overrides: Any) -> dict[str, Any]:
    """Task defaults: an owner, two retries with backoff, and a bound on how long a task may run."""
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "execution_timeout": dt.timedelta(hours=3),
        **overrides,
    }
