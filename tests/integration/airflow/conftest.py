"""Fixtures of the Airflow tests: configs under a temporary directory, an Airflow home, data.

- The daily DAG gets one simulated day of bronze: the simulator's traffic model, passed through the
  ingestion's own record splitting (contract validation) into ``bronze_events`` as the ingestion
  job would land it, without a broker (the daily DAG starts from bronze).
- The streaming DAG test gets the session broker with a topic of its own (``stream_config``, owned
  by tests/integration/orchestration/conftest.py).
- Airflow runs with what ``make airflow`` gives it, in a private home, on a free port.
- ``daily_run`` runs ``airflow dags test reelhouse_daily`` once for the package (it takes minutes):
  the DAG test asserts on what it built, the browser test looks at the same run in the UIs.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.events.records import split_records
from reelhouse.lake import Lake
from reelhouse.orchestration.services import airflow_environment, airflow_home
from reelhouse.simulator.catalogue import Catalogue
from reelhouse.simulator.traffic import TrafficGenerator
from reelhouse.streaming.ingest import validation_limits
from reelhouse.streaming.tables import BRONZE_EVENTS
from tests.integration.conftest import free_ports
from tests.integration.orchestration.conftest import stream_config  # noqa: F401 - the streaming DAG test's fixture

DAY_MS = 86_400_000
KAFKA_DELAY_MS = 2_000  # the broker stamps each record this long after its event time


def write_test_config(root: Path) -> Path:
    """A small config with every location under ``root``, tiny models and no ALS (fast on 2 cores)."""
    settings = {
        "env": "test",
        "data_dir": str(root),
        # Nothing here talks to Kafka: the daily DAG starts from bronze.
        "kafka": {
            "bootstrap_servers": f"127.0.0.1:{free_ports(1)[0]}",
            "events_topic": {"name": "reelhouse.events", "partitions": 2},
        },
        "stack": {"enabled": False, "state_dir": str(root / "stack")},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "conf": {"spark.driver.memory": "1g"}},
        "lake": {"root": str(root / "lake")},
        "ingest": {"checkpoint_dir": str(root / "checkpoints" / "ingest_events")},
        "speed": {"checkpoint_dir": str(root / "checkpoints" / "stream_features")},
        "simulator": {
            "catalogue_dir": str(root / "catalogue"),
            "users": 300,
            "videos": 600,
            "topics": 6,
            "creators": 40,
        },
        "online_store": {"type": "sqlite", "path": str(root / "online" / "features.db")},
        "mlflow": {
            "tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "artifact_root": str(root / "mlflow" / "artifacts"),
            "experiment": "reelhouse-test",
        },
        "training": {
            "max_fit_rows": 5_000,
            "lgbm_params": {"n_estimators": 15, "learning_rate": 0.2, "num_leaves": 7, "min_child_samples": 10},
            "lr_params": {"C": 1.0, "max_iter": 100},
        },
        "recall": {
            "lookback_days": 2,
            "quotas": {"covisit": 20, "topic": 10, "popularity": 10},
            "exploration_slots": 2,
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "reelhouse.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def seed_bronze_day(spark: SparkSession, config: ReelhouseConfig, start: dt.datetime, events: int) -> int:
    """About ``events`` simulated events spread over the day from ``start`` into bronze; the catalogue too."""
    sim = config.simulator
    catalogue = Catalogue(
        seed=sim.seed, users=sim.users, videos=sim.videos, topics=sim.topics, creators=sim.creators,
        zipf_exponent=sim.zipf_exponent, uploads_per_hour=sim.uploads_per_hour,
    )  # fmt: skip
    start_ms = int(start.timestamp() * 1000)
    generator = TrafficGenerator(catalogue, start_ms=start_ms, ms_per_event=DAY_MS / events, page_size=sim.page_size)
    block = generator.next_block(target_events=events)
    keep = block.event_time_ms < start_ms + DAY_MS  # sessions running past midnight belong to tomorrow
    values = [v for v, k in zip(block.values, keep.tolist(), strict=True) if k]
    keys = [key for key, k in zip(block.keys, keep.tolist(), strict=True) if k]
    stamps = (block.event_time_ms[keep] + KAFKA_DELAY_MS) * 1000
    partitions = [zlib.crc32(key) % config.kafka.events_topic.partitions for key in keys]
    next_offset: dict[int, int] = {}
    offsets = []
    for partition in partitions:
        offsets.append(next_offset.get(partition, 0))
        next_offset[partition] = offsets[-1] + 1
    records = pa.table(
        {
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.binary()),
            "topic": pa.array([config.kafka.events_topic.name] * len(keys), pa.string()),
            "partition": pa.array(partitions, pa.int32()),
            "offset": pa.array(offsets, pa.int64()),
            "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        }
    )
    bronze, _ = split_records(records, validation_limits(config))
    lake = Lake(config.lake)
    lake.write_arrow(spark, bronze, BRONZE_EVENTS)
    catalogue.write(sim.catalogue_dir, start_ms, block.visible_videos)
    return bronze.num_rows


def airflow_env(config: ReelhouseConfig, config_path: Path, home: Path) -> dict[str, str]:
    """What ``make airflow`` gives Airflow, with a private home and port, and quick failure on errors."""
    env = airflow_environment(config, config_path, home, port=free_ports(1)[0])
    env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "120"  # a busy 2-core machine parses slowly
    return env


def migrate(env: dict[str, str], home: Path) -> None:
    result = subprocess.run(
        [str(Path(env["PATH"].split(":")[0]) / "airflow"), "db", "migrate"],
        env=env, cwd=home, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def load_test_config(path: Path) -> ReelhouseConfig:
    return load_config(path, environ={})


@dataclass(frozen=True)
class DailyRun:
    """One ``airflow dags test reelhouse_daily`` over the simulated day [start, end)."""

    config: ReelhouseConfig
    config_path: Path
    home: Path  # AIRFLOW_HOME: where ``make airflow`` keeps it for this config, so the UI finds the run
    start: dt.datetime
    end: dt.datetime
    bronze_rows: int
    returncode: int
    took_s: float
    log: str = field(repr=False)  # the whole `airflow dags test` output: tests quote its end


@pytest.fixture(scope="package")
def daily_run(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> DailyRun:
    """The daily DAG on one simulated day of bronze; its result is checked by the tests that use it."""
    root = tmp_path_factory.mktemp("daily-dag")
    # A run whose logical date is today 00:00 UTC covers yesterday (the data interval [start, end)),
    # so the online rows loaded for `end` are well within their TTL.
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=1)
    config_path = write_test_config(root / "lake-root")
    config = load_test_config(config_path)
    bronze_rows = seed_bronze_day(spark, config, start, events=30_000)

    home = airflow_home(config)
    home.mkdir(parents=True)
    env = airflow_env(config, config_path, home)
    migrate(env, home)
    started = time.monotonic()
    log_file = root / "dags-test.log"
    with open(log_file, "w") as out:
        result = subprocess.run(
            [str(Path(env["PATH"].split(":")[0]) / "airflow"), "dags", "test", "reelhouse_daily", end.isoformat()],
            env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, timeout=900,
        )  # fmt: skip
    took_s = time.monotonic() - started
    return DailyRun(
        config=config, config_path=config_path, home=home, start=start, end=end, bronze_rows=bronze_rows,
        returncode=result.returncode, log=log_file.read_text(errors="replace"), took_s=took_s,
    )  # fmt: skip
