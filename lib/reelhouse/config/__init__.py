"""Typed configuration: pydantic models loaded from ``conf/*.yaml`` with environment overrides."""

from reelhouse.config.loader import ENV_PREFIX, load_config
from reelhouse.config.models import (
    IngestConfig,
    KafkaConfig,
    LakeConfig,
    OnlineStoreConfig,
    ReelhouseConfig,
    SimulatorConfig,
    SparkConfig,
    SpeedConfig,
    StackConfig,
    TopicConfig,
)

__all__ = [
    "ENV_PREFIX",
    "IngestConfig",
    "KafkaConfig",
    "LakeConfig",
    "OnlineStoreConfig",
    "ReelhouseConfig",
    "SimulatorConfig",
    "SparkConfig",
    "SpeedConfig",
    "StackConfig",
    "TopicConfig",
    "load_config",
]
