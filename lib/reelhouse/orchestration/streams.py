"""The long-running streaming jobs (ingestion, speed layer), started detached and supervised.

Each stream runs as its own ``spark-submit`` process group, started by the ``reelhouse_streaming``
DAG, with a pid file and an appended log under ``<data_dir>/streams/``. The pid file also records
the process's start time, so a pid the system has since given to another process never passes
for the stream. Supervising a stream means: if its process is alive, leave it; otherwise start
it again. Restarting is always safe: the jobs are exactly-once from their checkpoints.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.orchestration.lag import stream_settings
from reelhouse.orchestration.settings import job_path, python_executable, venv_bin

log = logging.getLogger(__name__)

STREAMS = ("ingest_events", "stream_features")


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: the process, when it started (to tell pid reuse apart), its command."""

    pid: int
    create_time: float
    command: list[str]
    started_at: str
    log_file: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def read_record(pid_file: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord(**json.loads(pid_file.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        log.warning("ignoring unreadable pid file %s: %s", pid_file, e)
        return None


def is_running(record: ProcessRecord | None) -> bool:
    """True while the recorded process (same pid, same start time) is alive and not a zombie."""
    if record is None:
        return False
    import psutil

    try:
        process = psutil.Process(record.pid)
        # Float start times round-trip through JSON exactly; a small tolerance covers clock-tick rounding.
        return abs(process.create_time() - record.create_time) < 0.5 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_detached(
    command: Sequence[str],
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> ProcessRecord:
    """Start ``command`` in a new session (it outlives the caller), output appended to ``log_file``."""
    import psutil

    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        out.write(f"\n--- {dt.datetime.now(dt.UTC).isoformat()} starting: {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
            start_new_session=True,
        )
    record = ProcessRecord(
        pid=process.pid,
        create_time=psutil.Process(process.pid).create_time(),
        command=list(command),
        started_at=dt.datetime.now(dt.UTC).isoformat(),
        log_file=str(log_file),
    )
    temporary = pid_file.with_suffix(".tmp")
    temporary.write_text(record.to_json())
    temporary.replace(pid_file)
    return record


def stop_process(pid_file: Path, timeout_s: float = 30.0, interrupt_s: float = 0.0) -> bool:
    """Stop the process group a pid file names: SIGTERM, then SIGKILL; True if one was running.

    ``interrupt_s`` > 0 first sends SIGINT to the leader alone and gives it that long to stop its
    own children (as Ctrl-C would).
    """
    record = read_record(pid_file)
    running = is_running(record)
    if running:
        assert record is not None
        if interrupt_s > 0:
            os.kill(record.pid, signal.SIGINT)
            deadline = time.monotonic() + interrupt_s
            while is_running(record) and time.monotonic() < deadline:
                time.sleep(0.2)
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(record.pid):
            log.warning("process group %d did not stop within %.0f s; killing it", record.pid, timeout_s)
            _signal_group(record.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while is_running(record) and time.monotonic() < deadline:
                time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return running


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (zombies of a caller that never reaps them aside)."""
    import psutil

    for process in psutil.process_iter(["pid", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.info["pid"]) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


# ----------------------------------------------------------------------------- the streams
def streams_dir(config: ReelhouseConfig) -> Path:
    return Path(config.data_dir) / "streams"


def pid_file(config: ReelhouseConfig, stream: str) -> Path:
    return streams_dir(config) / f"{stream}.pid"


def log_file(config: ReelhouseConfig, stream: str) -> Path:
    return streams_dir(config) / f"{stream}.log"


def stream_command(config: ReelhouseConfig, stream: str, config_path: str, master: str) -> list[str]:
    """``spark-submit`` of the stream's job, with the Kafka source and Delta jars (``spark.jars``)
    and the config's Spark settings (driver memory ...)."""
    from reelhouse.jvm import spark_submit_args

    stream_settings(config, stream)  # an unknown stream is an error here, not a missing job file
    conf = [item for key, value in config.spark.conf.items() for item in ("--conf", f"{key}={value}")]
    return [
        venv_bin("spark-submit"), "--master", master, "--name", f"reelhouse-{stream}",
        *spark_submit_args(config.spark.jars), *conf,
        str(job_path(stream)), "--config", config_path,
    ]  # fmt: skip


def stream_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stream: the caller's, with Spark's Python set to this interpreter."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYSPARK_PYTHON", python_executable())
    env.setdefault("PYSPARK_DRIVER_PYTHON", python_executable())
    return env


@dataclass(frozen=True)
class Supervision:
    stream: str
    action: str  # running | started | restarted
    pid: int
    started_at: str
    log_file: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def supervise_stream(
    config: ReelhouseConfig,
    stream: str,
    config_path: str,
    master: str,
    command: Sequence[str] | None = None,
) -> Supervision:
    """Leave ``stream`` running if it is; start it (again) if not. ``command`` replaces the job (tests)."""
    if stream not in STREAMS:
        raise ReelhouseError(f"unknown stream {stream!r}; expected one of {list(STREAMS)}")
    pids, logs = pid_file(config, stream), log_file(config, stream)
    record = read_record(pids)
    if is_running(record):
        assert record is not None
        return Supervision(stream, "running", record.pid, record.started_at, record.log_file)
    if record is not None:
        log.warning("%s (pid %d, started %s) is not running; restarting it, see %s",
                    stream, record.pid, record.started_at, record.log_file)  # fmt: skip
    started = start_detached(
        command or stream_command(config, stream, config_path, master), pids, logs, env=stream_env()
    )
    log.info("%s started: pid %d, log %s", stream, started.pid, logs)
    return Supervision(stream, "restarted" if record else "started", started.pid, started.started_at, str(logs))


def stop_streams(config: ReelhouseConfig, timeout_s: float = 30.0) -> list[str]:
    """Stop every supervised stream that runs; returns their names."""
    return [stream for stream in STREAMS if stop_process(pid_file(config, stream), timeout_s)]
