"""A feed service in a process of its own, for the demo and the closed loops that drive it.

``reelhouse serve`` is started exactly as an operator starts it (the console script, a config
file, optional ``REELHOUSE__...`` overrides in its environment), its output goes to a log file,
and :func:`wait_until_ready` polls ``/readyz`` until it answers 200, failing with the end of the
log when the process dies or the time runs out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reelhouse.errors import ReelhouseError

READY_PATH = "/readyz"


def _log_tail(logs: Path, lines: int = 20) -> str:
    return "\n".join(logs.read_text(errors="replace").splitlines()[-lines:]) if logs.exists() else ""


@contextmanager
def feed_service(
    config_path: str | Path, logs: Path, environment: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """``reelhouse serve --config config_path`` with ``environment`` added to this process's; stopped
    (SIGTERM, then SIGKILL after 30 s) when the block ends."""
    command = [str(Path(sys.executable).parent / "reelhouse"), "serve", "--config", str(config_path)]
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "w") as out:
        service = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(environment or {})}
        )
    try:
        yield service
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def readiness(url: str) -> tuple[int, dict[str, Any]] | None:
    """``/readyz``'s status and body, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + READY_PATH, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_until_ready(
    url: str,
    process: subprocess.Popen,
    logs: Path,
    timeout_s: float,
    condition: Callable[[dict[str, Any]], bool] | None = None,
    what: str = "ready",
) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers 200 (and ``condition`` holds for its body); returns the body."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = readiness(url)
        if answer is not None and answer[0] == 200 and (condition is None or condition(answer[1])):
            return answer[1]
        if process.poll() is not None:
            raise ReelhouseError(
                f"the feed service at {url} exited ({process.returncode}); the end of {logs}:\n{_log_tail(logs)}"
            )
        if time.monotonic() > deadline:
            seen = answer[1] if answer is not None else "no answer"
            raise ReelhouseError(
                f"the feed service at {url} was not {what} within {timeout_s:.0f} s (last /readyz: {seen}); "
                f"the end of {logs}:\n{_log_tail(logs)}"
            )
        time.sleep(0.5)
