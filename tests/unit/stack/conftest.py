"""Fixtures of the stack unit tests: configs pointing at a temporary state dir, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelhouse.config import KafkaConfig, ReelhouseConfig, StackConfig, TopicConfig


@pytest.fixture
def unit_config(tmp_path: Path) -> ReelhouseConfig:
    """A config whose stack state lives in ``tmp_path``; ports are never bound in unit tests."""
    return ReelhouseConfig(
        kafka=KafkaConfig(bootstrap_servers="127.0.0.1:39092", events_topic=TopicConfig(name="events", partitions=3)),
        stack=StackConfig.model_validate(
            {"state_dir": tmp_path / "stack", "broker": {"port": 39092, "controller_port": 39093}}
        ),
    )


def with_broker(config: ReelhouseConfig, **broker: object) -> ReelhouseConfig:
    """``config`` with some ``stack.broker`` settings replaced."""
    stack = config.stack.model_copy(update={"broker": config.stack.broker.model_copy(update=broker)})
    return config.model_copy(update={"stack": stack})
