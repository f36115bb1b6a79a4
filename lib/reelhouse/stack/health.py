"""Health checks: does a freshly started service answer its protocol before a deadline?"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

_POLL_S = 0.05


class ServiceExited(Exception):
    """The process died while we waited for it to become healthy."""


def wait_until(check: Callable[[float], bool], deadline: float, still_running: Callable[[], bool]) -> bool:
    """Call ``check(seconds_left)`` until it returns True (True) or the deadline passes (False).

    Raises :class:`ServiceExited` as soon as ``still_running()`` is False, so a crash is not
    reported as a timeout.
    """
    while True:
        if not still_running():
            raise ServiceExited
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if check(left):
            return True
        time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0)))


def accepts_tcp(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 1.0)):
            return True
    except OSError:
        return False


def answers_http(host: str, port: int, timeout_s: float) -> bool:
    """Any HTTP response counts: rclone answers an anonymous ``GET /`` with an S3 error document."""
    connection = http.client.HTTPConnection(host, port, timeout=min(timeout_s, 2.0))
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class KafkaMetadataProbe:
    """Answers True once the broker returns metadata; TCP is tried first to keep librdkafka quiet.

    The Tansu listener can accept connections while its storage is still unreachable (it then
    closes them), so only a metadata answer proves the broker can read its storage.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._admin: AdminClient | None = None

    def __call__(self, timeout_s: float) -> bool:
        if not accepts_tcp(self._host, self._port, timeout_s):
            return False
        if self._admin is None:
            self._admin = AdminClient(
                {"bootstrap.servers": f"{self._host}:{self._port}", "log.connection.close": False}
            )
        try:
            self._admin.list_topics(timeout=min(timeout_s, 2.0))
            return True
        except KafkaException:
            return False

    def close(self) -> None:
        # Dropping the last reference destroys the librdkafka handle and its connections; an open
        # connection would make the broker's graceful shutdown wait.
        self._admin = None
