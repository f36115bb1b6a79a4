"""Supervision by pid file: start detached, recognise the running process, restart a dead one, stop.

A ``sleep`` stands in for the streaming job: what is tested is the process handling.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time

import pytest

from reelhouse import jvm
from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.orchestration.settings import project_dir
from reelhouse.orchestration.streams import (
    is_running,
    pid_file,
    read_record,
    start_detached,
    stop_process,
    stop_streams,
    stream_command,
    supervise_stream,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def config(tmp_path):
    return load_config(project_dir() / "conf" / "local.yaml", environ={"REELHOUSE__DATA_DIR": str(tmp_path)})


@pytest.fixture(autouse=True)
def _stop_leftovers(config):
    yield
    stop_streams(config, timeout_s=5)


def wait_until_gone(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # our child in these tests: reap it, or it lingers as a zombie
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_a_started_process_is_recorded_and_running(tmp_path):
    record = start_detached(SLEEPER, tmp_path / "x.pid", tmp_path / "x.log")

    assert read_record(tmp_path / "x.pid") == record
    assert is_running(record)
    assert os.getpgid(record.pid) == record.pid  # its own group: stopping it stops its children
    assert "starting:" in (tmp_path / "x.log").read_text()
    assert stop_process(tmp_path / "x.pid", timeout_s=5)
    wait_until_gone(record.pid)
    assert not is_running(record)
    assert not (tmp_path / "x.pid").exists()


def test_a_reused_pid_is_not_taken_for_the_stream(tmp_path):
    record = start_detached(SLEEPER, tmp_path / "x.pid", tmp_path / "x.log")
    try:
        # Same pid, another start time: the system gave the pid to another process.
        assert not is_running(dataclasses.replace(record, create_time=record.create_time - 3600))
    finally:
        stop_process(tmp_path / "x.pid", timeout_s=5)


def test_supervision_starts_leaves_alone_and_restarts(config):
    first = supervise_stream(config, "ingest_events", "c.yaml", "local[2]", command=SLEEPER)
    assert first.action == "started"

    again = supervise_stream(config, "ingest_events", "c.yaml", "local[2]", command=SLEEPER)
    assert (again.action, again.pid) == ("running", first.pid)

    os.killpg(first.pid, signal.SIGKILL)
    wait_until_gone(first.pid)
    restarted = supervise_stream(config, "ingest_events", "c.yaml", "local[2]", command=SLEEPER)
    assert restarted.action == "restarted" and restarted.pid != first.pid
    assert read_record(pid_file(config, "ingest_events")).pid == restarted.pid

    assert stop_streams(config, timeout_s=5) == ["ingest_events"]
    assert stop_streams(config, timeout_s=5) == []


def test_an_unreadable_pid_file_means_not_running(config):
    path = pid_file(config, "stream_features")
    path.parent.mkdir(parents=True)
    path.write_text("12")  # not what we write

    assert read_record(path) is None
    assert supervise_stream(config, "stream_features", "c.yaml", "local[2]", command=SLEEPER).action == "started"


def test_the_stream_command_is_spark_submit_of_its_job_with_the_jars_and_the_config_spark_settings(config, monkeypatch):
    # Stand-in jars, so the test does not depend on `make install` having resolved the real ones.
    jars = [config.data_dir / "spark-sql-kafka.jar", config.data_dir / "delta-spark.jar"]
    monkeypatch.setattr(jvm, "spark_jars", lambda: jars)
    command = stream_command(config, "stream_features", "/etc/reelhouse.yaml", "spark://h:7077")

    assert command[0].endswith("spark-submit")
    assert command[1:5] == ["--master", "spark://h:7077", "--name", "reelhouse-stream_features"]
    assert command[5:7] == ["--jars", ",".join(str(j) for j in jars)]
    assert ["--conf", "spark.driver.memory=3g"] == command[7:9]  # conf/local.yaml's driver memory
    assert command[9:] == [str(project_dir() / "jobs" / "stream_features.py"), "--config", "/etc/reelhouse.yaml"]


def test_with_spark_jars_packages_spark_resolves_the_same_coordinates(config):
    packages = config.model_copy(update={"spark": config.spark.model_copy(update={"jars": "packages"})})
    command = stream_command(packages, "ingest_events", "/etc/reelhouse.yaml", "local[2]")

    assert command[5:7] == ["--packages", ",".join(jvm.spark_packages())]
    assert "--jars" not in command


def test_an_unknown_stream_is_an_error(config):
    with pytest.raises(ReelhouseError, match="unknown stream"):
        supervise_stream(config, "nightly", "c.yaml", "local[2]", command=SLEEPER)
