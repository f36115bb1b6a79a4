"""``make airflow``, ``make mlflow`` and ``make stop``: the local UIs as background processes.

Airflow runs as ``airflow standalone`` (scheduler, DAG processor, API server and triggerer, SQLite
metadata) with ``AIRFLOW_HOME=<data_dir>/airflow``, the project's ``airflow/dags`` folder, no
example DAGs, the ``spark_default`` connection built from the config, and the reelhouse config
handed to every task through ``REELHOUSE_CONFIG``. Its API server listens on 127.0.0.1 only. The
simple auth manager generates the ``admin`` password on the first start and keeps it in
``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``; it is printed with the URL.

Every process gets a pid file and a log beside it; ``stop`` ends the supervised streams, Airflow
and the MLflow UI, and only those.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StackError
from reelhouse.orchestration.connections import spark_connection_env
from reelhouse.orchestration.settings import CONFIG_ENV, PROJECT_DIR_ENV, project_dir, venv_bin
from reelhouse.orchestration.streams import is_running, read_record, start_detached, stop_process, stop_streams

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
AIRFLOW_PORT = 8080
MLFLOW_PORT = 5000
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
ADMIN = "admin"


def airflow_home(config: ReelhouseConfig) -> Path:
    return Path(config.data_dir) / "airflow"


def mlflow_dir(config: ReelhouseConfig) -> Path:
    return Path(config.data_dir) / "mlflow"


def airflow_environment(
    config: ReelhouseConfig,
    config_path: str | Path,
    home: str | Path,
    port: int = AIRFLOW_PORT,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every Airflow process (and so of every task) for this project."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    api = f"http://{HOST}:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(Path(home).resolve()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(project_dir() / "airflow" / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            # Two cores: a couple of tasks at a time, each of them a Spark job with its own JVM.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            CONFIG_ENV: str(Path(config_path).resolve()),
            PROJECT_DIR_ENV: str(project_dir()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            # spark-submit, airflow and reelhouse are console scripts of this environment.
            "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
            **spark_connection_env(config),
        }
    )
    return env


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class AirflowService:
    url: str
    username: str
    password: str | None
    pid: int
    log_file: Path
    already_running: bool

    def describe(self) -> str:
        password = self.password or f"(see {PASSWORDS_FILE} under AIRFLOW_HOME)"
        state = "already running" if self.already_running else "started"
        return "\n".join(
            [
                f"Airflow {state} (pid {self.pid}), log {self.log_file}",
                f"  URL       {self.url}",
                f"  user      {self.username}",
                f"  password  {password}",
                "  DAGs start paused: unpause reelhouse_daily, reelhouse_hourly, reelhouse_maintenance and",
                "  reelhouse_streaming (needs the broker: make stack-up) in the UI. Stop with: make stop",
            ]
        )


def admin_password(home: Path, username: str = ADMIN) -> str | None:
    try:
        return json.loads((home / PASSWORDS_FILE).read_text()).get(username)
    except (FileNotFoundError, ValueError):
        return None


def _quiet(_: str) -> None:
    pass


def start_airflow(
    config: ReelhouseConfig,
    config_path: str | Path,
    port: int = AIRFLOW_PORT,
    timeout_s: float = 240.0,
    progress: Callable[[str], None] = _quiet,
) -> AirflowService:
    """Start ``airflow standalone`` in the background (unless it runs) and wait until it answers.

    ``progress`` receives bits of text to show while waiting (the first start migrates the database).
    """
    home = airflow_home(config)
    pids, logs = home / "standalone.pid", home / "standalone.log"
    url = f"http://{HOST}:{port}"
    record = read_record(pids)
    if is_running(record):
        assert record is not None
        return AirflowService(url, ADMIN, admin_password(home), record.pid, logs, already_running=True)
    if _port_open(port):
        raise StackError(f"port {port} on {HOST} is taken by another process: pick another one with AIRFLOW_PORT=...")
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_environment(config, config_path, home, port)
    record = start_detached([venv_bin("airflow"), "standalone"], pids, logs, env=env, cwd=project_dir())
    deadline = time.monotonic() + timeout_s
    health = f"{url}/api/v2/monitor/health"
    progress(f"starting Airflow (pid {record.pid}, log {logs}) ")
    while not _healthy(health):
        if not is_running(record):
            progress("\n")
            raise StackError(f"Airflow exited while starting; the end of {logs}:\n{_tail(logs)}")
        if time.monotonic() > deadline:
            progress("\n")
            stop_process(pids)
            raise StackError(f"Airflow did not answer on {health} within {timeout_s:.0f} s; see {logs}")
        progress(".")
        time.sleep(2)
    # The password file is written by `standalone` before the API server starts.
    while admin_password(home) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    progress(" ready\n")
    return AirflowService(url, ADMIN, admin_password(home), record.pid, logs, already_running=False)


def stop_airflow(config: ReelhouseConfig) -> bool:
    """Stop what :func:`start_airflow` started: Ctrl-C first, so standalone stops its components itself."""
    return stop_process(airflow_home(config) / "standalone.pid", timeout_s=15.0, interrupt_s=30.0)


def start_mlflow_ui(
    config: ReelhouseConfig, port: int = MLFLOW_PORT, timeout_s: float = 180.0, progress: Callable[[str], None] = _quiet
) -> str:
    """The MLflow UI over ``mlflow.tracking_uri`` in the background; returns what to tell the user."""
    uri = config.mlflow.tracking_uri
    url = f"http://{HOST}:{port}"
    if uri.startswith(("http://", "https://")):
        return f"mlflow.tracking_uri is a server already: browse {uri}"
    directory = mlflow_dir(config)
    pids, logs = directory / "ui.pid", directory / "ui.log"
    record = read_record(pids)
    if is_running(record):
        assert record is not None
        return f"MLflow UI already running (pid {record.pid}): {url}"
    if _port_open(port):
        raise StackError(f"port {port} on {HOST} is taken by another process: pick another one with MLFLOW_PORT=...")
    # One worker: a UI for one person, and each worker takes long to start on a busy small machine.
    command = [
        venv_bin("mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    record = start_detached(command, pids, logs, cwd=project_dir())
    deadline = time.monotonic() + timeout_s
    progress(f"starting the MLflow UI (pid {record.pid}, log {logs}) ")
    while not _healthy(f"{url}/health"):
        if not is_running(record) or time.monotonic() > deadline:
            progress("\n")
            stop_process(pids)
            raise StackError(f"the MLflow UI did not start; the end of {logs}:\n{_tail(logs)}")
        progress(".")
        time.sleep(1)
    progress(" ready\n")
    return f"MLflow UI (pid {record.pid}, log {logs}): {url}   stop with: make stop"


def stop_mlflow_ui(config: ReelhouseConfig) -> bool:
    return stop_process(mlflow_dir(config) / "ui.pid")


def stop_all(config: ReelhouseConfig) -> list[str]:
    """Stop the supervised streams, Airflow and the MLflow UI; returns what was running."""
    stopped = [f"stream {name}" for name in stop_streams(config)]
    if stop_airflow(config):
        stopped.append("airflow")
    if stop_mlflow_ui(config):
        stopped.append("mlflow ui")
    return stopped


DAILY_DAG = "reelhouse_daily"


class AirflowApi:
    """A small client of the running Airflow's REST API (``/api/v2``), logged in as ``admin``."""

    def __init__(self, url: str, username: str, password: str, timeout_s: float = 30.0) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        body = json.dumps({"username": username, "password": password}).encode()
        self.token = self._call("POST", "/auth/token", body, authorised=False)["access_token"]

    def _call(self, method: str, path: str, body: bytes | None = None, authorised: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authorised:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            raise StackError(f"Airflow API {method} {path}: HTTP {e.code} {detail}") from e

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def patch(self, path: str, payload: dict) -> dict:
        return self._call("PATCH", path, json.dumps(payload).encode())


def run_daily(
    config: ReelhouseConfig,
    port: int = AIRFLOW_PORT,
    timeout_s: float = 3600.0,
    progress: Callable[[str], None] = _quiet,
) -> dict:
    """Unpause ``reelhouse_daily`` in the running Airflow and wait for the scheduler's run of the
    last whole UTC day (with ``catchup`` off, unpausing schedules exactly that interval).

    Returns the run's id, state, interval and task states. The DAG keeps its daily schedule
    afterwards, as in production; pause it in the UI to stop that.
    """
    home = airflow_home(config)
    password = admin_password(home)
    if password is None or not _healthy(f"http://{HOST}:{port}/api/v2/monitor/health"):
        raise StackError(f"Airflow is not running on {HOST}:{port}: start it with make airflow")
    api = AirflowApi(f"http://{HOST}:{port}", ADMIN, password)
    deadline = time.monotonic() + timeout_s
    progress(f"unpausing {DAILY_DAG} ")
    while True:  # the DAG processor stores the DAG some seconds after a first start
        try:
            api.patch(f"/api/v2/dags/{DAILY_DAG}", {"is_paused": False})
            break
        except StackError as e:
            if "404" not in str(e) or time.monotonic() > deadline:
                raise
            progress(".")
            time.sleep(3)
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    progress(f"\nwaiting for the scheduler's run of [{end - dt.timedelta(days=1):%Y-%m-%d}, {end:%Y-%m-%d}) ")
    while True:
        runs = api.get(f"/api/v2/dags/{DAILY_DAG}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
        run = next(
            (
                r
                for r in runs
                if r.get("data_interval_end") and dt.datetime.fromisoformat(r["data_interval_end"]) == end
            ),
            None,
        )
        if run is not None and run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"the {DAILY_DAG} run of the day before {end:%Y-%m-%d} did not finish within {timeout_s:.0f} s"
            )
        progress(".")
        time.sleep(10)
    progress(" done\n")
    tasks = api.get(f"/api/v2/dags/{DAILY_DAG}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}/taskInstances")
    return {
        "dag_id": DAILY_DAG,
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "data_interval": [run["data_interval_start"], run["data_interval_end"]],
        "tasks": {t["task_id"]: t["state"] for t in tasks["task_instances"]},
    }
