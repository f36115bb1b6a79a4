"""A private Redis server for the online-store tests: one ``redis-server`` process per session.

It listens on a free loopback port with persistence off and its working directory in a
temporary folder, so the tests never touch (or depend on) a Redis the machine may run on 6379.
Without ``redis-server`` on PATH the Redis tests are skipped, not failed: it is a Debian
package (``make system-deps``), not a Python dependency.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reelhouse.online.redis import RedisOnlineStore
from tests.contracts.online_store import DEFAULT_TTL_S
from tests.integration.conftest import free_ports, missing_prerequisite

START_TIMEOUT_S = 10.0
TEST_PREFIX = "test:"


def _start(executable: str, port: int, workdir: Path) -> subprocess.Popen[bytes] | None:
    """A redis-server answering PING on ``port``, or None when it exited (the port was taken meanwhile)."""
    log = (workdir / f"redis-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return None
            try:
                if client.ping():
                    return process
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    _stop(process)
    raise RuntimeError(f"redis-server did not answer PING on port {port} within {START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's redis-server (database 0); the server is stopped when the session ends."""
    executable = shutil.which("redis-server")
    if executable is None:
        missing_prerequisite(
            "redis-server is not installed: run `make system-deps` (apt-get install redis-server) "
            "to run the Redis online-store tests"
        )
    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # another process may take the free port before redis-server binds it
        (port,) = free_ports(1)
        process = _start(executable, port, workdir)
        if process is not None:
            break
    else:
        logs = "\n".join(path.read_text(errors="replace") for path in sorted(workdir.glob("redis-*.log")))
        raise RuntimeError(f"redis-server did not start:\n{logs}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the session server, emptied before each test so tests cannot see each other's keys."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(redis_url: str, redis_client: redis.Redis) -> Iterator[RedisOnlineStore]:
    s = RedisOnlineStore(redis_url, key_prefix=TEST_PREFIX, default_ttl_s=DEFAULT_TTL_S)
    yield s
    s.close()
