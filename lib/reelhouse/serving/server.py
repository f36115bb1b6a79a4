"""Running the feed service: in the foreground (``reelhouse serve``) or on a thread (tests, benchmarks).

uvicorn with its fastest installed parts (uvloop, httptools), one worker by default, no access log
(one log line per request would cost more than a feed request's own work). ``workers > 1`` starts
uvicorn's process manager over :func:`app_from_environment`; each worker loads its own indexes and
models, and they share the user state through the online store.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.config.loader import DEFAULT_CONFIG_ENV
from reelhouse.errors import ReelhouseError
from reelhouse.serving.app import create_app
from reelhouse.serving.collector import delivery_wait_s
from reelhouse.serving.security import require_token

log = logging.getLogger(__name__)

ROUTES = "GET /v1/feed, POST /v1/events, GET /healthz, GET /readyz, GET /metrics"


def _uvicorn_settings(config: ReelhouseConfig) -> dict[str, object]:
    # A graceful shutdown lets event posts in progress get Kafka's answer (they wait at most
    # delivery_wait_s); the producer then flushes the rest for serving.shutdown_flush_s.
    return {
        "loop": "auto",
        "http": "auto",
        "lifespan": "on",
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(delivery_wait_s(config.serving)),
    }


def app_from_environment():  # noqa: ANN201 - a FastAPI app, for uvicorn's factory mode
    """The app of the config ``$REELHOUSE_CONFIG`` names (uvicorn workers import this)."""
    return create_app(load_config())


def run_server(
    config: ReelhouseConfig,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    config_path: str | Path | None = None,
) -> None:
    """Serve until interrupted. Refuses to start without ``serving.token``."""
    require_token(config.serving)
    host = host or config.serving.host
    port = port or config.serving.port
    if workers < 1:
        raise ReelhouseError(f"--workers must be at least 1, got {workers}")
    log.info("feed service on http://%s:%d (%s), %d worker%s", host, port, ROUTES, workers, "" if workers == 1 else "s")
    if workers == 1:
        uvicorn.run(create_app(config), host=host, port=port, **_uvicorn_settings(config))
        return
    if config_path is None:
        raise ReelhouseError("several workers load the config themselves: pass --config")
    os.environ[DEFAULT_CONFIG_ENV] = str(Path(config_path).resolve())
    uvicorn.run(
        "reelhouse.serving.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **_uvicorn_settings(config),
    )


class ServingServer:
    """The service on a background thread of this process, on a free loopback port by default.

    ``with ServingServer(config) as server: httpx.get(server.url + "/v1/feed", ...)``. ``start``
    returns once the app has loaded everything it could (its lifespan ran) and listens.
    """

    def __init__(self, config: ReelhouseConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        require_token(config.serving)
        self.config = config
        self.app = create_app(config)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", **_uvicorn_settings(config)))
        self._thread = threading.Thread(target=self._run, name="reelhouse-serving", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self):  # noqa: ANN201 - the app's ServingState
        return self.app.state.serving

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e

    def start(self, timeout_s: float = 120.0) -> ServingServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise ReelhouseError(f"the feed service did not start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise ReelhouseError(f"the feed service did not start within {timeout_s} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        self._socket.close()

    def __enter__(self) -> ServingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
