"""Integration fixtures: one real local Kafka broker (Apache Kafka, KRaft) per test session.

``base_config`` is a test config (free ports, everything under one temporary directory) with
nothing started; ``local_stack`` starts it once; ``stack_config`` is the config of that running
stack, for tests that only need a broker. Tests that stop, kill or restart the broker build their
own stack with ``make_private_stack`` so the session stack stays up.

A missing prerequisite (Java, the broker jars of ``make install``) skips the tests that need it
on a developer's machine, with what to do; under ``CI=true`` it fails them instead, so a CI run
never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reelhouse import jvm
from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.errors import PrerequisiteError
from reelhouse.stack import LocalStack
from reelhouse.stack.ports import free_ports  # noqa: F401 - the tests' one free-port helper
from reelhouse.stack.services import find_java

PROJECT_DIR = Path(__file__).resolve().parents[2]


def missing_prerequisite(message: str) -> None:
    """Skip (a developer's machine) or fail (``CI=true``) a test whose prerequisite is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"missing prerequisite under CI=true: {message}", pytrace=False)
    pytest.skip(message)


def require_broker_prerequisites() -> None:
    """Java and the Apache Kafka jars, before a test tries to start a broker."""
    try:
        find_java()
        jvm.broker_classpath()
    except PrerequisiteError as e:
        missing_prerequisite(str(e))


def build_test_config(root: Path) -> ReelhouseConfig:
    """conf/local.yaml with free ports and every location under ``root``."""
    broker_port, controller_port = free_ports(2)
    overrides = {
        "data_dir": root,
        "kafka__bootstrap_servers": f"127.0.0.1:{broker_port}",
        "stack__enabled": "true",
        "stack__state_dir": root / "stack",
        "stack__broker__host": "127.0.0.1",
        "stack__broker__port": broker_port,
        "stack__broker__controller_port": controller_port,
        "lake__root": root / "lake",
        "ingest__checkpoint_dir": root / "checkpoints" / "ingest_events",
        "simulator__catalogue_dir": root / "catalogue",
    }
    environ = {f"REELHOUSE__{key.upper()}": str(value) for key, value in overrides.items()}
    return load_config(PROJECT_DIR / "conf" / "local.yaml", environ=environ)


@pytest.fixture(scope="session")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> ReelhouseConfig:
    """The session's test config; nothing is started by this fixture."""
    return build_test_config(tmp_path_factory.mktemp("reelhouse"))


@pytest.fixture(scope="session")
def local_stack(base_config: ReelhouseConfig) -> Iterator[LocalStack]:
    """The session's running broker; stopped when the session ends."""
    require_broker_prerequisites()
    stack = LocalStack(base_config)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack_config(local_stack: LocalStack) -> ReelhouseConfig:
    """Config of the running session stack: kafka.bootstrap_servers reaches its broker."""
    return local_stack.config


@pytest.fixture
def make_private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalStack]]:
    """Factory of private stacks (own free ports and state dir), not started; all stopped afterwards.

    ``make(start_timeout_s=2)``: keyword arguments replace ``stack`` settings.

    For tests that stop, kill or restart the broker, so the session stack stays up.
    """
    require_broker_prerequisites()
    made: list[LocalStack] = []

    def make(**stack_settings: object) -> LocalStack:
        config = build_test_config(tmp_path_factory.mktemp("private-stack"))
        if stack_settings:
            config = config.model_copy(update={"stack": config.stack.model_copy(update=stack_settings)})
        made.append(LocalStack(config))
        return made[-1]

    yield make
    for stack in made:
        stack.down()
