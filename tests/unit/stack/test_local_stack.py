"""LocalStack decisions that need no process: refusing a second `up`, disabled stacks, `down` safety."""

from __future__ import annotations

import os

import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StackError
from reelhouse.stack import LocalStack, processes

from .conftest import with_broker


def broker_argv(stack: LocalStack) -> list[str]:
    """The command line of this stack's broker, as /proc would show it."""
    return ["/usr/bin/java", "-Xmx512m", "-cp", "kafka.jar", "kafka.Kafka", str(stack.paths.server_properties)]


def disabled(config: ReelhouseConfig) -> ReelhouseConfig:
    return config.model_copy(update={"stack": config.stack.model_copy(update={"enabled": False})})


@pytest.fixture
def no_signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record signals instead of sending them, so a wrong decision cannot hurt anything."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


@pytest.fixture
def our_broker_is_4242(unit_config: ReelhouseConfig, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """A stack whose pid file names pid 4242, a live process running this stack's broker."""
    stack = LocalStack(unit_config)
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: broker_argv(stack) if pid == 4242 else None)
    processes.write_pid(stack.paths.pid_file("broker"), 4242)
    return stack


def test_up_refuses_when_our_broker_is_alive(our_broker_is_4242: LocalStack) -> None:
    stack = our_broker_is_4242
    with pytest.raises(StackError, match=r"already running.*pid 4242.*broker\.pid.*stack down"):
        stack.up()
    assert stack.paths.pid_file("broker").exists()


def test_status_reads_the_pid_file(our_broker_is_4242: LocalStack) -> None:
    stack = our_broker_is_4242
    [broker] = stack.status()
    assert broker.name == "broker" and broker.running and broker.pid == 4242
    assert broker.address == "127.0.0.1:39092"
    assert broker.data_dir == stack.paths.state_dir / "data" / "kafka"
    assert broker.log_file == stack.paths.state_dir / "logs" / "broker.log"
    assert stack.broker_running()
    text = stack.describe()
    assert "running, pid 4242" in text and "127.0.0.1:39092 (controller 127.0.0.1:39093)" in text
    assert str(stack.paths.server_properties) in text


def test_a_broker_of_another_stack_is_not_ours(unit_config: ReelhouseConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same main class, another state dir: `status` does not claim it and `down` leaves it alone.
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(
        processes, "process_cmdline", lambda pid: ["java", "kafka.Kafka", "/elsewhere/conf/server.properties"]
    )
    stack = LocalStack(unit_config)
    processes.write_pid(stack.paths.pid_file("broker"), 4242)
    assert not stack.broker_running()
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    stack.down()
    assert sent == [] and not stack.paths.pid_file("broker").exists()


def test_down_leaves_a_foreign_process_alone(unit_config: ReelhouseConfig, no_signals: list) -> None:
    stack = LocalStack(unit_config)
    processes.write_pid(stack.paths.pid_file("broker"), os.getpid())  # python, not the broker
    stack.down()
    assert no_signals == []
    assert not stack.paths.pid_file("broker").exists()


def test_down_with_nothing_started_is_safe(unit_config: ReelhouseConfig, no_signals: list) -> None:
    stack = LocalStack(unit_config)
    stack.down()
    stack.down()
    assert no_signals == []


def test_killing_a_broker_that_does_not_run_is_an_error(unit_config: ReelhouseConfig, no_signals: list) -> None:
    with pytest.raises(StackError, match="no local broker runs"):
        LocalStack(unit_config).kill_broker()
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
    with pytest.raises(StackError, match="no local broker"):
        stack.kill_broker()


def test_the_same_port_for_clients_and_controller_is_refused(unit_config: ReelhouseConfig) -> None:
    config = with_broker(unit_config, controller_port=39092)
    with pytest.raises(StackError, match="stack.broker.port and stack.broker.controller_port are both 39092"):
        LocalStack(config).up()
