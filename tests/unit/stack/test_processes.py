"""Pid files and the /proc identity check, without starting any process.

The test process itself stands in for "a live process that is not ours": it runs python, so a
pid file naming it must never be treated as a running broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelhouse.stack import processes

BROKER_ARGV = ["/usr/bin/java", "-Xmx512m", "-cp", "kafka.jar", "kafka.Kafka", "/state/conf/server.properties"]


def is_broker(cmdline: list[str] | None) -> bool:
    """The identity check the callers pass in (services.is_broker_command for the real broker)."""
    return cmdline == BROKER_ARGV


def test_pid_file_round_trip(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids" / "broker.pid"
    processes.write_pid(pid_file, 4242)
    assert pid_file.read_text() == "4242\n"
    assert processes.read_pid(pid_file) == 4242


@pytest.mark.parametrize("content", ["", "abc", "-3", "0", "12 13"])
def test_unparseable_pid_file_names_no_pid(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "broker.pid"
    pid_file.write_text(content)
    assert processes.read_pid(pid_file) is None


def test_missing_pid_file_names_no_pid(tmp_path: Path) -> None:
    assert processes.read_pid(tmp_path / "absent.pid") is None


def test_cmdline_of_this_process_is_read_from_proc() -> None:
    cmdline = processes.process_cmdline(os.getpid())
    assert cmdline and "python" in Path(cmdline[0]).name


def test_this_process_is_alive() -> None:
    assert processes.is_alive(os.getpid())


def test_stale_pid_file_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: False)
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, 4242)
    assert processes.clean_stale_pid_file(pid_file, is_broker) is None
    assert not pid_file.exists()


def test_pid_file_naming_a_foreign_live_process_is_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, os.getpid())  # alive, but python, not the broker
    assert processes.clean_stale_pid_file(pid_file, is_broker) is None
    assert not pid_file.exists()


def test_pid_file_naming_our_live_binary_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: BROKER_ARGV if pid == 4242 else None)
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, 4242)
    assert processes.clean_stale_pid_file(pid_file, is_broker) == 4242
    assert pid_file.exists()


def test_stop_process_never_signals_a_foreign_process(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    assert processes.stop_process(os.getpid(), is_broker, timeout_s=0.1) is False
    assert sent == []


def test_stop_process_terminates_our_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    alive = {4242}
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: BROKER_ARGV)
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid in alive)

    def fake_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        alive.discard(pid)  # exits on SIGTERM

    monkeypatch.setattr(os, "kill", fake_kill)
    assert processes.stop_process(4242, is_broker, timeout_s=1.0) is True
    assert sent == [(4242, processes.signal.SIGTERM)]


def test_stop_process_kills_after_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    alive = {4242}
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: BROKER_ARGV)
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid in alive)

    def fake_kill(pid: int, sig: int) -> None:
        sent.append(sig)
        if sig == processes.signal.SIGKILL:
            alive.discard(pid)  # ignores SIGTERM, dies on SIGKILL

    monkeypatch.setattr(os, "kill", fake_kill)
    assert processes.stop_process(4242, is_broker, timeout_s=0.1) is True
    assert sent == [processes.signal.SIGTERM, processes.signal.SIGKILL]


def test_kill_process_sends_sigkill_only_to_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    alive = {4242, os.getpid()}
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: BROKER_ARGV if pid == 4242 else ["python"])
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid in alive)

    def fake_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        alive.discard(pid)

    monkeypatch.setattr(os, "kill", fake_kill)
    assert processes.kill_process(os.getpid(), is_broker) is False
    assert processes.kill_process(4242, is_broker) is True
    assert sent == [(4242, processes.signal.SIGKILL)]


def test_a_live_child_is_alive_until_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert processes.is_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while processes.is_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not processes.is_alive(child.pid)  # reaped by is_alive, not left a zombie
    finally:
        child.kill()
        child.wait()


def test_log_tail_quotes_only_new_lines_without_colours(tmp_path: Path) -> None:
    log_file = tmp_path / "broker.log"
    log_file.write_text("old run\n")
    offset = processes.log_size(log_file)
    with log_file.open("a") as f:
        f.write("\x1b[31mERROR\x1b[0m port taken\n\nline 2\n")
    assert processes.log_tail(log_file, offset) == "ERROR port taken\nline 2"
    assert processes.log_tail(log_file, offset, lines=1) == "line 2"
    assert processes.log_tail(tmp_path / "absent.log") == "(no log file)"
