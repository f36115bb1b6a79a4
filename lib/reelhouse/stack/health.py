"""Health checks: does a freshly started service answer its protocol before a deadline?"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

_POLL_S = 0.05


# Control flow of the health wait (callers turn it into a StackError), hence not in errors.py.
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


class KafkaMetadataProbe:
    """Answers True once the broker returns metadata naming itself; TCP is tried first to keep librdkafka quiet.

    Kafka opens its client listener only once the broker has caught up with the metadata log and
    the controller unfenced it, so an answer means clients can create topics, produce and consume.
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
            metadata = self._admin.list_topics(timeout=min(timeout_s, 2.0))
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def close(self) -> None:
        # Dropping the last reference destroys the librdkafka handle and closes its connections.
        self._admin = None
