"""Typed configuration: pydantic models loaded from ``conf/*.yaml`` with environment overrides."""

from reelhouse.config.loader import ENV_PREFIX, load_config
from reelhouse.config.models import (
    ExperimentConfig,
    IngestConfig,
    KafkaConfig,
    LakeConfig,
    MlflowConfig,
    OnlineStoreConfig,
    OrchestrationConfig,
    RecallConfig,
    ReelhouseConfig,
    ServingConfig,
    SimulatorConfig,
    SparkConfig,
    SpeedConfig,
    StackConfig,
    TopicConfig,
    TrainingConfig,
    VariantConfig,
)

__all__ = [
    "ExperimentConfig",
    "OrchestrationConfig",
    "ServingConfig",
    "VariantConfig",
    "ENV_PREFIX",
    "IngestConfig",
    "KafkaConfig",
    "LakeConfig",
    "MlflowConfig",
    "OnlineStoreConfig",
    "RecallConfig",
    "ReelhouseConfig",
    "SimulatorConfig",
    "SparkConfig",
    "SpeedConfig",
    "StackConfig",
    "TopicConfig",
    "TrainingConfig",
    "load_config",
]
