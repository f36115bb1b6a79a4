"""``reelhouse serve`` as an operator runs it: its own process, a YAML config, a log line with the URL,
a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.integration.conftest import free_ports
from tests.integration.serving.conftest import AUTH, ServingEnvironment

pytestmark = pytest.mark.integration


def test_reelhouse_serve_runs_the_service_until_stopped(serving_env: ServingEnvironment, tmp_path):
    (tmp_path / "conf").mkdir()
    config_file = tmp_path / "conf" / "serving.yaml"
    config_file.write_text(yaml.safe_dump(serving_env.config.model_dump(mode="json")))
    (port,) = free_ports(1)
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "reelhouse.cli", "serve", "--config", str(config_file), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        body = httpx.get(f"{url}/v1/feed", headers=AUTH, params={"user_id": serving_env.users[38], "k": 4}).json()
        assert len(body["items"]) == 4 and body["degraded"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    # uvicorn shuts down gracefully, then re-raises the signal: killed by SIGTERM is the exit status.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"feed service on http://127.0.0.1:{port}" in output
