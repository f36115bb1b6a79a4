"""LocalStack decisions that need no process: refusing a second `up`, disabled stacks, `down` safety."""

from __future__ import annotations

import os

import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StackError
from reelhouse.stack import LocalStack, processes

TANSU_ARGV = ["/root/.calfkit/bin/tansu-v0.6.0-510f3e2", "broker"]


def disabled(config: ReelhouseConfig) -> ReelhouseConfig:
    return config.model_copy(update={"stack": config.stack.model_copy(update={"enabled": False})})


@pytest.fixture
def no_signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record signals instead of sending them, so a wrong decision cannot hurt anything."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


def test_up_refuses_when_our_broker_is_alive(unit_config: ReelhouseConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: TANSU_ARGV if pid == 4242 else None)
    stack = LocalStack(unit_config)
    processes.write_pid(stack.paths.pid_file("broker"), 4242)
    with pytest.raises(StackError, match=r"already running.*pid 4242.*broker\.pid"):
        stack.up()
    assert stack.paths.pid_file("broker").exists()


def test_status_reads_pid_files(unit_config: ReelhouseConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: TANSU_ARGV if pid == 4242 else None)
    stack = LocalStack(unit_config)
    processes.write_pid(stack.paths.pid_file("broker"), 4242)
    by_name = {s.name: s for s in stack.status()}
    assert by_name["broker"].running and by_name["broker"].pid == 4242
    assert by_name["broker"].address == "127.0.0.1:39092"
    assert not by_name["object_store"].running and by_name["object_store"].pid is None
    assert stack.broker_running()
    text = stack.describe()
    assert "running, pid 4242" in text and "not running" in text and "http://127.0.0.1:39000" in text


def test_down_leaves_a_foreign_process_alone(unit_config: ReelhouseConfig, no_signals: list) -> None:
    stack = LocalStack(unit_config)
    for service in ("broker", "object_store"):
        processes.write_pid(stack.paths.pid_file(service), os.getpid())  # python, neither tansu nor rclone
    stack.down()
    assert no_signals == []
    assert not stack.paths.pid_file("broker").exists()
    assert not stack.paths.pid_file("object_store").exists()


def test_down_with_nothing_started_is_safe(unit_config: ReelhouseConfig, no_signals: list) -> None:
    stack = LocalStack(unit_config)
    stack.down()
    stack.down()
    assert no_signals == []


def test_disabled_stack_starts_and_stops_nothing(
    unit_config: ReelhouseConfig, no_signals: list, caplog: pytest.LogCaptureFixture
) -> None:
    stack = LocalStack(disabled(unit_config))
    with caplog.at_level("INFO", logger="reelhouse.stack"):
        stack.up()
        stack.down()
    assert "nothing to start" in caplog.text and "nothing to stop" in caplog.text
    assert not unit_config.stack.state_dir.exists()
    assert stack.status() == [] and not stack.broker_running()
    assert "stack.enabled: false" in stack.describe() and "127.0.0.1:39092" in stack.describe()
    with pytest.raises(StackError, match="no local broker"):
        stack.restart_broker()


def test_memory_storage_runs_only_the_broker(unit_config: ReelhouseConfig) -> None:
    broker = unit_config.stack.broker.model_copy(update={"storage": "memory"})
    config = unit_config.model_copy(update={"stack": unit_config.stack.model_copy(update={"broker": broker})})
    stack = LocalStack(config)
    assert [s.name for s in stack.status()] == ["broker"]
    assert "in memory" in stack.describe()


def test_same_port_for_both_services_is_refused(unit_config: ReelhouseConfig) -> None:
    store = unit_config.stack.object_store.model_copy(update={"port": 39092})
    config = unit_config.model_copy(update={"stack": unit_config.stack.model_copy(update={"object_store": store})})
    with pytest.raises(StackError, match="stack.broker.port and stack.object_store.port"):
        LocalStack(config).up()
