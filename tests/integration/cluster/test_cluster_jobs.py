"""Jobs write the same tables on a Spark standalone cluster as in local mode.

On the cluster no task runs in the driver: each runs in an executor JVM of a worker, with that
executor's own Python workers, so the parquet files are written there and only the driver
commits them to Delta. Each job runs twice with ``spark-submit`` on the same inputs, once with
``--master spark://...`` and once with ``local[2]``, each into its own lake; every table it
writes must hold the same rows, column for column.

A job joins the comparison with one function in ``JOBS``: it creates the inputs the two runs
share and returns a :class:`ClusterJob`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from reelhouse.config import ReelhouseConfig, TopicConfig
from reelhouse.events.contract import encode_event
from reelhouse.features.gold import feature_table
from reelhouse.jvm import spark_submit_args
from reelhouse.kafka import ensure_topic
from reelhouse.lake import Lake
from reelhouse.silver.tables import SILVER_EVENTS
from reelhouse.stack import LocalStack
from reelhouse.stack.spark_cluster import alive_workers, master_state
from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from tests.integration.streaming.conftest import valid_event, write_config
from tests.integration.training.test_training_set import H10, add, at, event, gold, impression, play
from tests.support.kafka import produce

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[3]
LOCAL_MASTER = "local[2]"


@dataclass(frozen=True)
class ClusterJob:
    """A job as both runs submit it, and what it must write."""

    app_name: str  # the SparkSession's job name, as the master lists the application
    script: str
    args: tuple[str, ...]
    #: table -> (rows it must hold, columns that order them). The counts keep an empty
    #: comparison from passing.
    tables: Mapping[str, tuple[int, tuple[str, ...]]]
    #: Writes one run's lake inputs into ``config.lake`` with the test session; called once per run.
    #: None for jobs whose inputs live outside the lake (a topic).
    prepare_lake: Callable[[SparkSession, ReelhouseConfig], None] | None = None


def ingest_events_job(config: ReelhouseConfig) -> ClusterJob:
    """Kafka -> bronze + quarantine: the topic is filled once, each run drains all of it.

    Three micro-batches (at most 1,500 records each) over four partitions, malformed messages mixed in,
    so both executors write files for both tables and the driver commits several times.
    """
    now_ms = int(time.time() * 1000)
    valid = [valid_event(i, now_ms, prefix="c") for i in range(4_000)]
    no_user = {k: v for k, v in valid_event(999_999, now_ms, prefix="bad").items() if k != "user_id"}
    malformed = [b"{not json", b"[1, 2]", encode_event(no_user), b"", b'{"pad": "' + b"x" * 20_000 + b'"}'] * 4
    messages = [(e["user_id"].encode(), encode_event(e)) for e in valid]
    for n, value in enumerate(malformed):
        messages.insert(n * 191, (b"k", value))
    keys, values = zip(*messages)
    produce(config.kafka, config.kafka.events_topic.name, values, keys)
    return ClusterJob(
        app_name="ingest_events",
        script="jobs/ingest_events.py",
        args=("--trigger", "available_now"),
        tables={
            BRONZE_EVENTS.name: (len(valid), ("event_id",)),
            QUARANTINE_EVENTS.name: (len(malformed), ("kafka_partition", "kafka_offset")),
        },
    )


def build_training_set_job(config: ReelhouseConfig) -> ClusterJob:
    """silver_events + gold features -> training set: each run's lake gets the same hand-made rows.

    300 impressions over 2.5 hours (one request each) with plays, likes and skips, and hourly
    feature rows, so the point-in-time join, the labels and the splits all have work to do.
    """
    topics = ("pets", "food", "travel")
    silver = []
    for i in range(300):
        request, user, video, shown = f"r{i:03d}", f"u{i % 7}", f"v{i % 13}", at(i / 2)
        topic = topics[i % 13 % 3]
        silver.append(impression(f"i{i}", request, user, video, shown, topic=topic))
        if i % 2 == 0:
            silver.append(play(f"p{i}", request, user, video, shown + dt.timedelta(seconds=5), 1_000 * (i % 12)))
        if i % 5 == 0:
            silver.append(event(f"l{i}", "like", request, user, video, shown + dt.timedelta(seconds=9), topic=topic))
        if i % 7 == 0:
            skipped = shown + dt.timedelta(seconds=1)
            silver.append(event(f"k{i}", "skip", request, user, video, skipped, 300, 10_000, topic=topic))
    hours = [at(60 * h) for h in range(-1, 3)]
    gold_rows: dict[str, list[dict]] = {"video": [], "user": [], "user_topic": []}
    for h, t in enumerate(hours):
        gold_rows["video"] += [gold("video", {"video_id": f"v{v}"}, t, video_impressions_1h=v + h) for v in range(13)]
        for u in range(7):
            gold_rows["user"].append(gold("user", {"user_id": f"u{u}"}, t, user_events_1d=u * h))
            gold_rows["user_topic"] += [
                gold("user_topic", {"user_id": f"u{u}", "topic": topic}, t, user_topic_plays_7d=u + h)
                for topic in topics
            ]

    def prepare_lake(spark: SparkSession, run: ReelhouseConfig) -> None:
        lake = Lake(run.lake)
        for entity, rows in gold_rows.items():
            add(spark, lake, feature_table(entity), rows)
        add(spark, lake, SILVER_EVENTS, silver)

    return ClusterJob(
        app_name="build_training_set",
        script="jobs/build_training_set.py",
        args=("--start", H10.isoformat(), "--end", at(180).isoformat()),
        tables={config.training.table: (300, ("request_id",))},
        prepare_lake=prepare_lake,
    )


JOBS: dict[str, Callable[[ReelhouseConfig], ClusterJob]] = {
    "ingest_events": ingest_events_job,
    "build_training_set": build_training_set_job,
}


def shared_config(stack: LocalStack, job_name: str) -> ReelhouseConfig:
    """The stack's config with a fresh topic, small micro-batches and processing that suits tests."""
    config = stack.config
    topic = TopicConfig(name=f"cluster-{job_name}-{uuid.uuid4().hex[:6]}", partitions=4)
    ensure_topic(config.kafka, topic)
    return config.model_copy(
        update={
            "kafka": config.kafka.model_copy(update={"events_topic": topic}),
            "ingest": config.ingest.model_copy(update={"max_offsets_per_trigger": 1_500}),
            "spark": config.spark.model_copy(update={"shuffle_partitions": 2}),
        }
    )


def run_config(shared: ReelhouseConfig, run_dir: Path) -> ReelhouseConfig:
    """``shared`` with this run's own lake and checkpoint (absolute paths: executors read them too)."""
    return shared.model_copy(
        update={
            "lake": shared.lake.model_copy(update={"root": str(run_dir / "lake")}),
            "ingest": shared.ingest.model_copy(update={"checkpoint_dir": str(run_dir / "checkpoints" / "ingest")}),
        }
    )


def submit(job: ClusterJob, config: ReelhouseConfig, master: str, run_dir: Path) -> subprocess.Popen[bytes]:
    """Start ``spark-submit --master <master> --jars <Kafka source, Delta> <job> --config <this run's YAML>``,
    as a user runs it (the jars as ``python -m reelhouse.jvm submit-args`` gives them)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = write_config(config, run_dir / "config.yaml")
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        # The driver's address executors call back on: loopback, whatever the machine's interfaces.
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        master,
        *spark_submit_args(config.spark.jars),
        job.script,
        "--config",
        str(config_file),
        *job.args,
    ]
    with (run_dir / "spark-submit.log").open("wb") as out:
        # Own process group, so a failed test can stop the driver with its JVM and Python workers.
        return subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_both(job: ClusterJob, configs: Mapping[str, ReelhouseConfig], run_dirs: Mapping[str, Path]) -> None:
    """Both runs at once (each waits on JVM starts much of the time); any left running is stopped."""
    started = {master: submit(job, configs[master], master, run_dirs[master]) for master in configs}
    try:
        deadline = time.monotonic() + 300
        for master, process in started.items():
            code = process.wait(timeout=max(deadline - time.monotonic(), 1))
            log_file = run_dirs[master] / "spark-submit.log"
            assert code == 0, f"{job.script} on {master} failed, see {log_file}:\n{log_file.read_text()[-3000:]}"
    finally:
        for process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def written_tables(job: ClusterJob, config: ReelhouseConfig) -> dict[str, pa.Table]:
    lake = Lake(config.lake)
    return {
        name: lake.to_arrow(name).sort_by([(column, "ascending") for column in order])
        for name, (_, order) in job.tables.items()
    }


def test_the_cluster_has_its_workers_registered_and_a_second_up_keeps_it(cluster_stack: LocalStack) -> None:
    cluster = cluster_stack.config.stack.spark_cluster
    state = master_state(cluster, 5.0)
    assert state is not None and state["status"] == "ALIVE"
    assert state["url"] == cluster_stack.spark_cluster.master_url == f"spark://127.0.0.1:{cluster.master_port}"
    assert alive_workers(state) == 2
    assert [(w["cores"], w["memory"]) for w in state["workers"]] == [(1, 1024), (1, 1024)]
    pids = [d.pid for d in cluster_stack.spark_cluster.status()]

    LocalStack(cluster_stack.config).up(spark_cluster=True)

    assert [d.pid for d in cluster_stack.spark_cluster.status()] == pids
    assert all(pids) and cluster_stack.spark_cluster.running()
    assert f"address  {cluster_stack.spark_cluster.master_url}" in cluster_stack.describe()


@pytest.mark.parametrize("job_name", sorted(JOBS))
def test_a_job_writes_the_same_tables_on_the_cluster_as_in_local_mode(
    job_name: str, cluster_stack: LocalStack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    shared = shared_config(cluster_stack, job_name)
    job = JOBS[job_name](shared)
    spark_cluster = cluster_stack.spark_cluster
    run_dirs = {spark_cluster.master_url: tmp_path / "cluster", LOCAL_MASTER: tmp_path / "local"}
    configs = {master: run_config(shared, run_dir) for master, run_dir in run_dirs.items()}
    if job.prepare_lake is not None:
        spark = request.getfixturevalue("spark")  # only for the jobs whose inputs are tables
        for config in configs.values():
            job.prepare_lake(spark, config)

    run_both(job, configs, run_dirs)

    on_cluster = written_tables(job, configs[spark_cluster.master_url])
    in_local_mode = written_tables(job, configs[LOCAL_MASTER])
    for name, (rows, _) in job.tables.items():
        assert on_cluster[name].num_rows == in_local_mode[name].num_rows == rows, name
        assert on_cluster[name].schema == in_local_mode[name].schema, name
        # Whole rows, ordered the same way: every column, lineage (Kafka position) included.
        assert on_cluster[name].to_pylist() == in_local_mode[name].to_pylist(), name

    # The cluster run really used the cluster: the application finished there with an executor on each worker.
    state = master_state(cluster_stack.config.stack.spark_cluster, 5.0)
    assert state is not None
    app_ids = [a["id"] for a in state["completedapps"] if a["name"].endswith(f"-{job.app_name}")]
    assert app_ids, f"no finished application named *-{job.app_name} on {spark_cluster.master_url}"
    for worker in spark_cluster.status():
        assert worker.work_dir is None or (worker.work_dir / app_ids[-1]).is_dir(), f"no executor on {worker.title}"
