"""Exactly-once ingestion under faults: the job SIGKILLed mid-stream, the broker SIGKILLed and
restarted while producers go on, a second job on a running job's checkpoint.

The kill schedule is drawn from a seed, printed with every failure; set REELHOUSE_TEST_SEED to
replay one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from reelhouse.config import ReelhouseConfig, TopicConfig
from reelhouse.errors import StreamError
from reelhouse.events.contract import encode_event
from reelhouse.jvm import spark_submit_args
from reelhouse.kafka import ensure_topic, producer
from reelhouse.lake import Lake
from reelhouse.streaming.ingest import run_ingestion
from reelhouse.streaming.queries import OWNER_FILE
from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from tests.support.kafka import read_topic

from .conftest import valid_event, valid_event_ids, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_DIR = Path(__file__).resolve().parents[3]
SEED = int(os.environ.get("REELHOUSE_TEST_SEED", "20261205"))
log = logging.getLogger(__name__)


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    # Own process group: a kill takes the driver, its JVM and the Python workers together.
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _ingest(config: ReelhouseConfig, config_file: Path, trigger: str, log_path: Path) -> subprocess.Popen:
    """The ingestion job exactly as the README runs it: spark-submit on local[2] with the project's jars."""
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    return _start(
        [
            spark_submit,
            *spark_submit_args(config.spark.jars),
            "--master",
            "local[2]",
            "jobs/ingest_events.py",
            "--config",
            str(config_file),
            "--trigger",
            trigger,
        ],
        log_path,
    )


def _drain(config: ReelhouseConfig, config_file: Path, log_path: Path) -> None:
    job = _ingest(config, config_file, "available_now", log_path)
    assert job.wait(timeout=300) == 0, f"drain failed, see {log_path}:\n{log_path.read_text()[-3000:]}"


def _bronze_ids(config: ReelhouseConfig) -> list[str]:
    lake = Lake(config.lake)  # a second reader (delta-rs) beside the job's delta-spark
    if not lake.exists(BRONZE_EVENTS.name):
        return []
    return lake.to_arrow(BRONZE_EVENTS.name, columns=["event_id"]).column("event_id").to_pylist()


def _planned_batches(config: ReelhouseConfig) -> list[Path]:
    offsets = Path(config.ingest.checkpoint_dir) / "offsets"
    return list(offsets.glob("[0-9]*")) if offsets.exists() else []


def test_exactly_once_when_the_job_is_killed_at_random_moments(ingest_config, tmp_path):
    config_file = write_config(ingest_config, tmp_path / "config.yaml")
    job_log = tmp_path / "ingest.log"
    rng = random.Random(SEED)
    print(f"kill schedule seed {SEED} (REELHOUSE_TEST_SEED={SEED} replays it)")
    simulator = _start(
        [
            sys.executable,
            "-m",
            "reelhouse.cli",
            "simulate",
            "--config",
            str(config_file),
            "--rate",
            "4000",
            "--duration",
            "90",
            "--malformed-share",
            "0.02",
            "--no-catalogue",
        ],
        tmp_path / "simulate.log",
    )
    kills = []
    try:
        while len(kills) < 5:
            job = _ingest(ingest_config, config_file, "processing_time", job_log)
            # Kill at a random moment once the job is past start-up (a batch is planned), so
            # kills land mid-batch, between the Delta writes and Spark's own checkpoint commits.
            planned = len(_planned_batches(ingest_config))
            deadline = time.monotonic() + 120
            while len(_planned_batches(ingest_config)) <= planned and time.monotonic() < deadline:
                time.sleep(0.2)
            delay = rng.uniform(0.0, 4.0)
            time.sleep(delay)
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
            kills.append(round(delay, 2))
        assert simulator.wait(timeout=240) == 0, (tmp_path / "simulate.log").read_text()[-3000:]
    finally:
        if simulator.poll() is None:
            simulator.kill()
    _drain(ingest_config, config_file, job_log)

    # Written by another process (the simulator): read until nothing new arrives, not to the ends reported now.
    messages = read_topic(ingest_config.kafka, ingest_config.kafka.events_topic.name, quiet_s=3.0)
    expected = valid_event_ids(messages)
    bronze = _bronze_ids(ingest_config)
    where = f"seed {SEED}, kills {kills} s after a batch was planned"
    duplicates = [i for i, n in Counter(bronze).items() if n > 1]
    assert not duplicates, f"{where}: {len(duplicates)} events written twice, e.g. {duplicates[:3]}"
    missing = set(expected) - set(bronze)
    assert not missing, f"{where}: {len(missing)} valid events lost, e.g. {sorted(missing)[:3]}"
    assert len(bronze) == len(expected), where
    quarantined = Lake(ingest_config.lake).to_arrow(QUARANTINE_EVENTS.name).num_rows
    assert quarantined == len(messages) - len(expected), where


class _Producer(threading.Thread):
    """Produces events at ``rate``/s through an outage, until ``stop`` is set or ``count`` are sent;
    remembers which the broker acknowledged."""

    def __init__(self, config: ReelhouseConfig, count: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.config, self.count, self.rate = config, count, rate
        self.acked: list[str] = []
        self.failed: list[str] = []
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        # Idempotent and acks=all: a retry across the broker restart cannot duplicate or reorder.
        p = producer(self.config.kafka, **{"enable.idempotence": "true", "acks": "all", "message.timeout.ms": "120000"})
        now_ms = int(time.time() * 1000)
        started = time.monotonic()

        def delivered(err, msg) -> None:
            event_id = json.loads(msg.value())["event_id"]
            (self.failed if err is not None else self.acked).append(event_id)

        for i in range(self.count):
            if self.stop.is_set():
                break
            event = valid_event(i, now_ms, prefix="kb")
            while True:
                try:
                    p.produce(
                        self.config.kafka.events_topic.name,
                        encode_event(event),
                        event["user_id"].encode(),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    p.poll(0.05)
            self.sent += 1
            p.poll(0)
            time.sleep(max(0.0, started + (i + 1) / self.rate - time.monotonic()))
        p.flush(180)


def test_broker_killed_and_restarted_while_producing_loses_and_duplicates_nothing(make_private_stack, tmp_path):
    stack = make_private_stack()
    stack.up()
    base = stack.config
    config = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"events_topic": TopicConfig(name="kill-broker", partitions=4)}),
            "lake": base.lake.model_copy(update={"root": str(tmp_path / "lake")}),
            "ingest": base.ingest.model_copy(
                update={"checkpoint_dir": str(tmp_path / "checkpoint"), "processing_time": "1 second"}
            ),
        }
    )
    ensure_topic(config.kafka, config.kafka.events_topic)
    config_file = write_config(config, tmp_path / "config.yaml")
    job_log = tmp_path / "ingest.log"
    job = _ingest(config, config_file, "processing_time", job_log)
    # Traffic runs until some is acknowledged after the restart, however long the job takes to start.
    sender = _Producer(config, count=200_000, rate=600.0)
    try:
        sender.start()
        deadline = time.monotonic() + 120
        while not _bronze_ids(config) and time.monotonic() < deadline:
            assert job.poll() is None, f"ingestion died before the kill:\n{job_log.read_text()[-3000:]}"
            time.sleep(0.5)
        assert _bronze_ids(config), f"nothing ingested before the kill:\n{job_log.read_text()[-3000:]}"
        before = sender.sent
        broker = next(s for s in stack.status() if s.name == "broker")
        os.kill(broker.pid, signal.SIGKILL)
        time.sleep(2)
        stack.up()  # the same log dirs: up deletes nothing
        restarted = len(sender.acked)
        deadline = time.monotonic() + 120
        while len(sender.acked) < restarted + 3_000 and sender.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        sender.stop.set()
        sender.join(timeout=240)
        assert not sender.is_alive(), "the producer did not finish after the restart"
        assert sender.sent > before and len(sender.acked) >= restarted + 3_000, (
            "too little was produced after the restart"
        )
        deadline = time.monotonic() + 180
        while len(_bronze_ids(config)) < len(sender.acked) and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=60)
    _drain(config, config_file, job_log)

    assert not sender.failed, f"{len(sender.failed)} messages were not acknowledged, e.g. {sender.failed[:3]}"
    bronze = _bronze_ids(config)
    duplicates = [i for i, n in Counter(bronze).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} events written twice, e.g. {duplicates[:3]}"
    assert set(bronze) == set(sender.acked) and len(sender.acked) == sender.sent


def test_a_second_job_on_a_running_jobs_checkpoint_is_refused(spark, ingest_config, tmp_path):
    config_file = write_config(ingest_config, tmp_path / "config.yaml")
    job_log = tmp_path / "ingest.log"
    job = _ingest(ingest_config, config_file, "processing_time", job_log)
    try:
        owner_file = Path(ingest_config.ingest.checkpoint_dir) / OWNER_FILE
        deadline = time.monotonic() + 120
        while not (owner_file.exists() and owner_file.read_text().strip()) and time.monotonic() < deadline:
            assert job.poll() is None, f"the first job died:\n{job_log.read_text()[-3000:]}"
            time.sleep(0.2)
        owner = json.loads(owner_file.read_text())

        with pytest.raises(StreamError, match=rf"in use by a running stream \(ingest_events, pid {owner['pid']} "):
            run_ingestion(spark, ingest_config, trigger="available_now")

        assert job.poll() is None, "the refused start must leave the running job alone"
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=60)
