"""Per-test isolation for the speed layer: a fresh topic, lake, checkpoint and online store."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from reelhouse.config import ReelhouseConfig, TopicConfig
from reelhouse.kafka import ensure_topic
from reelhouse.lake import Lake
from reelhouse.silver.tables import DIM_VIDEOS


@pytest.fixture
def speed_config(stack_config: ReelhouseConfig, tmp_path: Path, request: pytest.FixtureRequest) -> ReelhouseConfig:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    topic = TopicConfig(name=f"s-{name}-{uuid.uuid4().hex[:6]}", partitions=2)
    return fresh_speed_config(stack_config, tmp_path, topic)


def fresh_speed_config(stack_config: ReelhouseConfig, root: Path, topic: TopicConfig) -> ReelhouseConfig:
    config = stack_config.model_copy(
        update={
            "kafka": stack_config.kafka.model_copy(update={"events_topic": topic}),
            "lake": stack_config.lake.model_copy(update={"root": str(root / "lake")}),
            "online_store": stack_config.online_store.model_copy(update={"path": root / "online.db", "ttl_s": None}),
            "speed": stack_config.speed.model_copy(
                update={
                    "checkpoint_dir": str(root / "checkpoint"),
                    "max_offsets_per_trigger": 150,
                    "dimensions_refresh_s": 0.5,
                }
            ),
        }
    )
    ensure_topic(config.kafka, topic)
    return config


def write_videos(spark, config: ReelhouseConfig, videos: dict[str, tuple[str, dt.datetime]]) -> None:
    """dim_videos rows: video_id -> (topic, upload time)."""
    lake = Lake(config.lake)
    rows = pa.Table.from_pylist(
        [
            {
                "video_id": v,
                "creator_id": "c1",
                "topic": topic,
                "duration_ms": 15_000,
                "upload_time": uploaded,
                "updated_at": uploaded,
            }
            for v, (topic, uploaded) in videos.items()
        ],
        schema=DIM_VIDEOS.schema,
    )
    lake.write_arrow(spark, rows, DIM_VIDEOS)
