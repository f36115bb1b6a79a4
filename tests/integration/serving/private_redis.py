"""A redis-server of one test alone, which the test may stop, restart, or pause (SIGSTOP) to make it hang.

It persists to an append-only file, so a restart on the same port keeps the data. Without
``redis-server`` on PATH the test is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.integration.conftest import free_ports, missing_prerequisite

START_TIMEOUT_S = 20.0


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (self.port,) = free_ports(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            missing_prerequisite("redis-server is not installed: run `make system-deps`")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The server stopped with SIGSTOP: connections stay open, nothing answers. Resumed on exit, always."""
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused server would not act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=20)
