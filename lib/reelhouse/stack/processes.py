"""Detached service processes: pid files, identity checks through /proc, start, stop, log tails.

Nothing here knows about Kafka; :mod:`reelhouse.stack.local` composes these helpers. A pid is
only ever signalled after ``/proc/<pid>/cmdline`` passes the caller's identity check (an
:data:`Identity`: the command we started), so a stale pid file whose number was reused by an
unrelated process is never acted upon.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: Whether a command line (None: the process is gone) is the service a pid file should name.
Identity = Callable[[Sequence[str] | None], bool]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def read_pid(pid_file: Path) -> int | None:
    """The pid a pid file names, or None when the file is missing or does not hold a number."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, pid_file)


def remove_pid_file(pid_file: Path) -> None:
    pid_file.unlink(missing_ok=True)


def process_cmdline(pid: int) -> list[str] | None:
    """argv of a live process, or None if it is gone (zombies have an empty cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def is_alive(pid: int) -> bool:
    """True while any thread of ``pid`` runs; reaps it first if it is our own child.

    A killed multi-threaded process (a JVM) shows its main thread as a zombie while its other
    threads are still exiting, and those still hold its files and listening sockets: it counts
    as alive until the last thread is gone, so a restart does not find its ports still taken.
    """
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    state = _state(Path(f"/proc/{pid}/stat"))
    if state is None:
        return False
    if state not in ("Z", "X"):
        return True
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(_state(thread / "stat") not in (None, "Z", "X") for thread in threads)


def _state(stat_file: Path) -> str | None:
    """The state letter of a /proc stat file (R, S, Z ...), or None once the process is gone."""
    try:
        stat = stat_file.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0]


def owned_pid(pid_file: Path, is_ours: Identity) -> int | None:
    """The pid from ``pid_file`` if that process is alive and ``is_ours``, else None."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    return pid if is_ours(process_cmdline(pid)) else None


def clean_stale_pid_file(pid_file: Path, is_ours: Identity) -> int | None:
    """Return the live pid ``pid_file`` names; remove the file if it points at nothing of ours."""
    if not pid_file.exists():
        return None
    pid = owned_pid(pid_file, is_ours)
    if pid is None:
        log.info("removing stale pid file %s (no live process of ours behind it)", pid_file)
        remove_pid_file(pid_file)
    return pid


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on ``host:port`` (binding it fails with EADDRINUSE)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port in TIME_WAIT after a restart is free for the real server too.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log_file: Path, cwd: Path, label: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it outlives us), appending stdout and stderr to ``log_file``.

    ``label`` names the start in the log's marker line (default: the executable's name).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {label or Path(argv[0]).name} ===\n".encode())
        out.flush()
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def stop_process(pid: int, is_ours: Identity, timeout_s: float) -> bool:
    """SIGTERM ``pid`` if it ``is_ours``, SIGKILL it after ``timeout_s``; True if it was ours."""
    if not is_alive(pid) or not is_ours(process_cmdline(pid)):
        return False
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return True
    # Not asked again whether it is ours: a process exiting halfway may show an empty command line.
    log.warning("pid %d did not exit %.0f s after SIGTERM; killing it", pid, timeout_s)
    _kill(pid)
    return True


def kill_process(pid: int, is_ours: Identity) -> bool:
    """SIGKILL ``pid`` if it ``is_ours`` and wait until it is gone; True if it was ours."""
    if not is_alive(pid) or not is_ours(process_cmdline(pid)):
        return False
    _kill(pid)
    return True


def _kill(pid: int, timeout_s: float = 5.0) -> None:
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(pid, timeout_s):
        log.error("pid %d survived SIGKILL", pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def log_size(log_file: Path) -> int:
    try:
        return log_file.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(log_file: Path, since: int = 0, lines: int = 20) -> str:
    """The last ``lines`` lines written to ``log_file`` after byte offset ``since``, colours removed."""
    try:
        with log_file.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    tail = [_ANSI_ESCAPE.sub("", line) for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(log is empty)"
