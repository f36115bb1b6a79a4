"""Free local TCP ports, for services a run starts next to others (tests, benchmarks, the loop's service)."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free; held open together so they are distinct.

    Another process may take one between this call and its use; callers that start a service on
    it fail loudly then (the port is in use), never silently share it."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
