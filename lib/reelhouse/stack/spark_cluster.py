"""A Spark standalone cluster beside the local stack: one master and ``stack.spark_cluster.workers`` workers.

``reelhouse stack up --spark-cluster`` starts it; jobs then run on it with
``spark-submit --master spark://<host>:<master_port> jobs/<job>.py``. The pyspark wheel ships
``bin/spark-class`` but not ``sbin/start-master.sh`` or ``start-worker.sh``, so each daemon is
``spark-class <main class> ...`` started detached, with its pid file and log under
``stack.state_dir`` like the broker's. A worker runs one executor JVM per application; the
executor starts its Python workers with the driver's interpreter, so they import the same
reelhouse as the driver.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelhouse.config import ReelhouseConfig
from reelhouse.config.models import SparkClusterConfig
from reelhouse.errors import PrerequisiteError, StackError
from reelhouse.stack import health, processes
from reelhouse.stack.services import StackPaths

log = logging.getLogger(__name__)

MASTER = "spark_master"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_WORKER_NAME = re.compile(r"^spark_worker_([0-9]+)$")


def worker_name(index: int) -> str:
    return f"spark_worker_{index}"


def title(name: str) -> str:
    match = _WORKER_NAME.match(name)
    return f"Spark worker {match.group(1)}" if match else "Spark master"


def master_url(cluster: SparkClusterConfig) -> str:
    return f"spark://{cluster.host}:{cluster.master_port}"


def cluster_dir(paths: StackPaths) -> Path:
    """Executor files (stdout, stderr, shipped files) and scratch space of the workers."""
    return paths.data_dir / "spark"


def worker_dir(paths: StackPaths, name: str) -> Path:
    return cluster_dir(paths) / name.replace("spark_", "")


def find_spark_class() -> Path:
    """``bin/spark-class`` of the installed pyspark, found without importing pyspark (slow)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteError("pyspark is not installed in this environment: run `make install`")
    spark_class = Path(next(iter(spec.submodule_search_locations))) / "bin" / "spark-class"
    if not spark_class.is_file():
        raise PrerequisiteError(f"{spark_class} is missing: reinstall pyspark (`make install`)")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise PrerequisiteError(
            "Spark needs Java 17+: install it (e.g. openjdk-17-jre-headless) and put `java` on PATH"
        )
    return spark_class


def master_command(spark_class: Path, cluster: SparkClusterConfig) -> list[str]:
    return [
        str(spark_class),
        MASTER_CLASS,
        "--host",
        cluster.host,
        "--port",
        str(cluster.master_port),
        "--webui-port",
        str(cluster.master_webui_port),
    ]


def worker_command(spark_class: Path, cluster: SparkClusterConfig, work_dir: Path) -> list[str]:
    # Port 0: the worker's RPC and web UI ports are picked by the kernel, so any number of
    # workers (and of clusters on one machine) never collide; the master lists them.
    return [
        str(spark_class),
        WORKER_CLASS,
        "--host",
        cluster.host,
        "--port",
        "0",
        "--webui-port",
        "0",
        "--cores",
        str(cluster.cores_per_worker),
        "--memory",
        cluster.memory_per_worker,
        "--work-dir",
        str(work_dir),
        master_url(cluster),
    ]


def cluster_environment(
    base: Mapping[str, str], spark_class: Path, cluster: SparkClusterConfig, scratch: Path
) -> dict[str, str]:
    env = dict(base)
    env.update(
        SPARK_HOME=str(spark_class.parent.parent),
        # Executors take the interpreter from the driver; this one serves anything a worker runs itself.
        PYSPARK_PYTHON=sys.executable,
        # Web UIs bind to every interface unless told otherwise.
        SPARK_LOCAL_IP=cluster.host,
        SPARK_LOCAL_DIRS=str(scratch),
    )
    return env


def master_state(cluster: SparkClusterConfig, timeout_s: float) -> dict[str, Any] | None:
    """The master's ``/json`` page (status, workers, applications), or None while it does not answer."""
    connection = http.client.HTTPConnection(cluster.host, cluster.master_webui_port, timeout=min(timeout_s, 2.0))
    try:
        connection.request("GET", "/json/")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        state = json.loads(body)
        return state if isinstance(state, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def alive_workers(state: Mapping[str, Any]) -> int:
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


@dataclass(frozen=True)
class DaemonStatus:
    """What `status` knows about the master or one worker."""

    name: str
    title: str
    running: bool
    pid: int | None
    log_file: Path
    pid_file: Path
    work_dir: Path | None


class SparkCluster:
    """The master and workers of ``config.stack.spark_cluster``; pid files are the record, as for the broker."""

    def __init__(self, config: ReelhouseConfig, paths: StackPaths | None = None) -> None:
        self._stack = config.stack
        self._cluster = config.stack.spark_cluster
        self.paths = paths or StackPaths(config.stack.state_dir)
        # Popen handles of processes this instance started, kept so they are reaped on stop.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def master_url(self) -> str:
        return master_url(self._cluster)

    @property
    def webui_url(self) -> str:
        return f"http://{self._cluster.host}:{self._cluster.master_webui_port}"

    def worker_names(self) -> list[str]:
        return [worker_name(i) for i in range(1, self._cluster.workers + 1)]

    def up(self) -> None:
        """Start the master and whichever workers are not running; wait until all workers registered.

        Safe to repeat: what runs is kept, what is missing is started, workers beyond
        ``workers`` (from an earlier config) are stopped.
        """
        if not self._stack.enabled:
            log.info("stack.enabled is false: no local Spark cluster is started")
            return
        spark_class = find_spark_class()
        scratch = cluster_dir(self.paths) / "local"
        for directory in (self.paths.pids_dir, self.paths.logs_dir, scratch):
            directory.mkdir(parents=True, exist_ok=True)
        env = cluster_environment(os.environ, spark_class, self._cluster, scratch)
        started: list[str] = []
        try:
            self._up_master(spark_class, env, started)
            self._up_workers(spark_class, env, started)
            for name in self._worker_pid_names():
                if name not in self.worker_names():
                    self._stop(name)
        except BaseException:
            for name in reversed(started):
                self._stop(name)
            raise
        log.info(
            "Spark cluster is up: %s with %d workers, web UI %s", self.master_url, self._cluster.workers, self.webui_url
        )

    def down(self) -> list[str]:
        """Stop the workers, then the master (only processes our pid files name); the titles stopped."""
        if not self._stack.enabled:
            return []
        names = sorted(self._worker_pid_names(), key=_worker_index) + [MASTER]
        return [title(name) for name in names if self._stop(name)]

    def running(self) -> bool:
        """True when the master and every configured worker run."""
        return all(self._pid(name) is not None for name in [MASTER, *self.worker_names()])

    def status(self) -> list[DaemonStatus]:
        return [
            DaemonStatus(
                name=name,
                title=title(name),
                running=(pid := self._pid(name)) is not None,
                pid=pid,
                log_file=self.paths.log_file(name),
                pid_file=self.paths.pid_file(name),
                work_dir=None if name == MASTER else worker_dir(self.paths, name),
            )
            for name in [MASTER, *self.worker_names()]
        ]

    def describe_lines(self) -> list[str]:
        """Lines for `reelhouse stack status`, indented like the stack's other services."""
        daemons = self.status()
        if not any(d.running for d in daemons):
            return ["  Spark cluster: not running (`reelhouse stack up --spark-cluster` starts one)"]
        lines: list[str] = []
        for daemon in daemons:
            state = f"running, pid {daemon.pid}" if daemon.running else "not running"
            lines.append(f"  {daemon.title}: {state}")
            if daemon.name == MASTER:
                ui = self.webui_url
                if daemon.running:
                    master = master_state(self._cluster, 1.0)
                    registered = "not answering" if master is None else f"{alive_workers(master)} workers registered"
                    ui = f"{ui} ({registered})"
                lines += [
                    f"    address  {self.master_url}",
                    f"    web UI   {ui}",
                    f"    submit   spark-submit --master {self.master_url} jobs/<job>.py",
                ]
            else:
                cores = self._cluster.cores_per_worker
                lines += [
                    f"    offers   {cores} core{'s' if cores > 1 else ''}, {self._cluster.memory_per_worker}",
                    f"    work dir {daemon.work_dir}",
                ]
            lines.append(f"    log      {daemon.log_file}")
        return lines

    # ---- internals --------------------------------------------------------------------------

    def _up_master(self, spark_class: Path, env: Mapping[str, str], started: list[str]) -> None:
        pid = self._pid(MASTER)
        if pid is None:
            processes.remove_pid_file(self.paths.pid_file(MASTER))
            for port, key in (
                (self._cluster.master_port, "stack.spark_cluster.master_port"),
                (self._cluster.master_webui_port, "stack.spark_cluster.master_webui_port"),
            ):
                self._refuse_taken_port(port, key)
            self._spawn(MASTER, master_command(spark_class, self._cluster), env)
            started.append(MASTER)
        else:
            log.info("Spark master already running (pid %d) at %s", pid, self.master_url)

        def master_alive(left: float) -> bool:
            state = master_state(self._cluster, left)
            return state is not None and state.get("status") == "ALIVE"

        self._wait([MASTER], master_alive, f"answer on its web UI {self.webui_url}")

    def _up_workers(self, spark_class: Path, env: Mapping[str, str], started: list[str]) -> None:
        names = self.worker_names()
        for name in names:
            pid = self._pid(name)
            if pid is not None:
                log.info("%s already running (pid %d)", title(name), pid)
                continue
            processes.remove_pid_file(self.paths.pid_file(name))
            work_dir = worker_dir(self.paths, name)
            work_dir.mkdir(parents=True, exist_ok=True)
            self._spawn(name, worker_command(spark_class, self._cluster, work_dir), env)
            started.append(name)

        def all_registered(left: float) -> bool:
            state = master_state(self._cluster, left)
            return state is not None and alive_workers(state) >= len(names)

        self._wait(names, all_registered, f"register {len(names)} workers with {self.master_url}")

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        child = processes.spawn(argv, env, self.paths.log_file(name), cwd=self.paths.state_dir)
        self._children[name] = child
        processes.write_pid(self.paths.pid_file(name), child.pid)
        log.info("started %s (pid %d), log %s", title(name), child.pid, self.paths.log_file(name))

    def _refuse_taken_port(self, port: int, key: str) -> None:
        try:
            taken = processes.port_in_use(self._cluster.host, port)
        except OSError as e:
            raise StackError(
                f"the Spark master cannot listen on {self._cluster.host}:{port}: {e}; check stack.spark_cluster.host"
            ) from e
        if taken:
            raise StackError(
                f"port {port} on {self._cluster.host} is already in use by another process, so the Spark master "
                f"cannot listen there; change {key} or stop that process"
            )

    def _wait(self, names: list[str], check: Callable[[float], bool], what: str) -> None:
        """Wait for ``check``; if one of ``names`` dies or time runs out, raise with its log's tail."""
        timeout = self._cluster.start_timeout_s
        started_at = time.monotonic()
        offsets = {name: processes.log_size(self.paths.log_file(name)) for name in names}
        exited: list[str] = []

        def still_running() -> bool:
            exited.extend(name for name in names if self._pid(name) is None)
            return not exited

        try:
            healthy = health.wait_until(check, started_at + timeout, still_running)
        except health.ServiceExited:
            name = exited[0]
            raise StackError(
                f"{title(name)} exited while the cluster was starting. "
                f"Last lines of {self.paths.log_file(name)}:\n{self._tail(name, offsets)}"
            ) from None
        if not healthy:
            name = names[0]
            raise StackError(
                f"the Spark cluster did not {what} within {timeout:g} s (stack.spark_cluster.start_timeout_s). "
                f"Last lines of {self.paths.log_file(name)}:\n{self._tail(name, offsets)}"
            )
        log.info("Spark cluster: did %s after %.2f s", what, time.monotonic() - started_at)

    def _tail(self, name: str, offsets: Mapping[str, int]) -> str:
        text = processes.log_tail(self.paths.log_file(name), offsets.get(name, 0))
        return "\n".join("    " + line for line in text.splitlines())

    def _worker_pid_names(self) -> list[str]:
        """Workers with a pid file, including ones beyond the configured count."""
        if not self.paths.pids_dir.is_dir():
            return []
        return [p.stem for p in self.paths.pids_dir.glob("spark_worker_*.pid") if _WORKER_NAME.match(p.stem)]

    def _owns(self, name: str, pid: int) -> bool:
        """``pid`` runs our master, or the worker with our work dir (spark-class execs java, same pid)."""
        cmdline = processes.process_cmdline(pid) or []
        if name == MASTER:
            return MASTER_CLASS in cmdline
        return WORKER_CLASS in cmdline and str(worker_dir(self.paths, name)) in cmdline

    def _pid(self, name: str) -> int | None:
        pid = processes.read_pid(self.paths.pid_file(name))
        if pid is None or not processes.is_alive(pid):
            return None
        child = self._children.get(name)
        if child is not None and child.pid == pid:
            # Started by this instance: ours, also while spark-class execs java and the
            # process's command line reads empty for a moment.
            return pid
        return pid if self._owns(name, pid) else None

    def _stop(self, name: str) -> bool:
        """Stop the daemon behind ``name``'s pid file if it is ours; always remove the pid file."""
        pid_file = self.paths.pid_file(name)
        pid = processes.read_pid(pid_file)
        stopped = False
        if pid is not None and self._pid(name) == pid:
            _terminate(pid, self._stack.stop_timeout_s)
            log.info("stopped %s (pid %d)", title(name), pid)
            stopped = True
        elif pid is not None and processes.is_alive(pid):
            log.warning(
                "pid file %s names pid %d, which is not our %s (%s); leaving it alone",
                pid_file,
                pid,
                title(name),
                " ".join(processes.process_cmdline(pid) or ["?"])[:200],
            )
        child = self._children.pop(name, None)
        if child is not None:
            child.poll()
        processes.remove_pid_file(pid_file)
        return stopped


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM the daemon, SIGKILL it after ``timeout_s``, then whatever is left of its process group.

    A worker stops its executors itself; the group (the daemon's own session, so nothing else is
    in it) catches an executor or Python worker that outlived it.
    """
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while processes.is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not processes.is_alive(pid):
            break
        log.warning("pid %d did not exit %.0f s after %s", pid, wait_s, sig.name)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _worker_index(name: str) -> int:
    match = _WORKER_NAME.match(name)
    return int(match.group(1)) if match else 0
