"""Fixtures of the orchestration tests: configs under a temporary directory, an Airflow home, data.

- The daily DAG gets one simulated day of bronze: the simulator's traffic model, passed through the
  ingestion's own record splitting (contract validation) into ``bronze_events`` as the ingestion
  job would land it, without a broker (the daily DAG starts from bronze).
- The stream tests get the session broker with a topic of their own (``stream_config``).
- Airflow runs with what ``make airflow`` gives it, in a private home, on a free port.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from reelhouse.config import ReelhouseConfig, TopicConfig, load_config
from reelhouse.kafka.clients import ensure_topic, producer
from reelhouse.events.records import split_records
from reelhouse.lake import Lake
from reelhouse.lake.tables import BRONZE_EVENTS
from reelhouse.orchestration.services import airflow_environment
from reelhouse.orchestration.streams import stop_streams
from reelhouse.simulator.catalogue import Catalogue
from reelhouse.simulator.traffic import TrafficGenerator
from reelhouse.streaming.ingest import validation_limits
from tests.integration.conftest import free_ports

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
        "simulator": {"catalogue_dir": str(root / "catalogue"), "users": 300, "videos": 600, "topics": 6, "creators": 40},
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
        "recall": {"lookback_days": 2, "quotas": {"covisit": 20, "topic": 10, "popularity": 10}, "exploration_slots": 2},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "reelhouse.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def seed_bronze_day(config: ReelhouseConfig, start: dt.datetime, events: int) -> int:
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
    lake.ensure_table(BRONZE_EVENTS)
    lake.commit(BRONZE_EVENTS, lake.file_writer(BRONZE_EVENTS).write(bronze))
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


def produce(config: ReelhouseConfig, count: int, start: int = 0, flush_each: bool = False) -> None:
    """``count`` small messages into the events topic: not events (ingestion quarantines them), only
    their offsets matter to the stream tests. ``flush_each`` sends each in a batch of its own."""
    kafka = producer(config.kafka)
    for i in range(start, start + count):
        kafka.produce(config.kafka.events_topic.name, f'{{"n": {i}}}'.encode(), str(i).encode())
        if flush_each:
            assert kafka.flush(30) == 0
    assert kafka.flush(30) == 0


@pytest.fixture
def stream_config(stack_config, tmp_path):
    """The session broker, a topic of its own, everything else under tmp_path, a small driver."""
    topic = TopicConfig(name=f"supervised-{uuid.uuid4().hex[:8]}", partitions=2)
    settings = stack_config.model_dump(mode="json")
    settings.update(
        data_dir=str(tmp_path),
        lake={**settings["lake"], "root": str(tmp_path / "lake")},
        kafka={**settings["kafka"], "events_topic": topic.model_dump()},
        spark={**settings["spark"], "shuffle_partitions": 2, "conf": {"spark.driver.memory": "1g"}},
        ingest={**settings["ingest"], "checkpoint_dir": str(tmp_path / "checkpoints" / "ingest_events"),
                "processing_time": "1 seconds"},
        speed={**settings["speed"], "checkpoint_dir": str(tmp_path / "checkpoints" / "stream_features")},
    )  # fmt: skip
    path = tmp_path / "reelhouse.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_config(path, environ={})
    ensure_topic(config.kafka, topic)
    yield config, str(path)
    stop_streams(config, timeout_s=20)
