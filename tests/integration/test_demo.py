"""``reelhouse demo`` end to end, small: the real stack, every step, a short closed loop.

The smoke test of ``make demo``: a config of its own (free ports, every location under a temporary
directory, a catalogue of a few hundred users and videos, a few seconds of traffic, 8 s of closed
loop) run through the CLI exactly as a newcomer runs it. It checks that every step ran and left
what the next needs: bronze and silver rows, a registered champion, candidates, feeds served and
their events landed back in bronze.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reelhouse.config import load_config
from reelhouse.lake import Lake
from reelhouse.stack import LocalStack
from tests.integration.conftest import PROJECT_DIR, free_ports, require_broker_prerequisites

pytestmark = pytest.mark.integration


def _demo_config(root: Path) -> Path:
    broker, controller, serving = free_ports(3)
    base = yaml.safe_load((PROJECT_DIR / "conf" / "local.yaml").read_text())
    base["kafka"]["bootstrap_servers"] = f"127.0.0.1:{broker}"
    base.update(
        data_dir=str(root),
        stack={
            "enabled": True,
            "state_dir": str(root / "stack"),
            "broker": {"port": broker, "controller_port": controller},
        },
        lake={"root": str(root / "lake")},
        ingest={"checkpoint_dir": str(root / "checkpoints" / "ingest_events")},
        simulator={
            "catalogue_dir": str(root / "catalogue"),
            "users": 300,
            "videos": 400,
            "creators": 40,
            "topics": 6,
            "rate": 3_000,
            "duration_s": 4,
            "processes": 1,
        },
        mlflow={
            "tracking_uri": f"sqlite:///{root}/mlflow/mlflow.db",
            "artifact_root": str(root / "mlflow" / "artifacts"),
        },
        serving={"port": serving},
    )
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_the_demo_runs_every_step_on_a_small_catalogue(tmp_path: Path) -> None:
    require_broker_prerequisites()
    path = _demo_config(tmp_path)
    # A process of its own, as a newcomer runs it (and the demo stops its SparkSession at the end,
    # which in this process would be the test session's).
    command = [str(Path(sys.executable).parent / "reelhouse"), "demo", "--config", str(path)]
    command += ["--closed-loop-seconds", "8", "--closed-loop-users", "40"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    printed = done.stdout
    assert done.returncode == 0, (printed + done.stderr)[-4000:]
    assert "reelhouse demo — what happened" in printed
    assert (tmp_path / "demo.local.yaml").stat().st_mode & 0o777 == 0o600  # the service token, owner only

    config = load_config(path)
    lake = Lake(config.lake)
    for table in ("bronze_events", "silver_events", "video_features", "training_set", "user_candidates"):
        assert lake.exists(table), f"the demo left no {table}"
    assert lake.to_arrow("user_candidates", columns=["source"]).num_rows > 0
    # Feeds were served and the closed loop's events came back through Kafka into bronze.
    serving_line = next(line for line in printed.splitlines() if line.strip().startswith("serving"))
    feeds = int(serving_line.split()[1].replace(",", ""))
    assert feeds > 0, serving_line
    variants = lake.to_arrow("bronze_events", columns=["variant"]).column("variant").drop_null()
    assert len(variants) > 0  # impressions stamped with their A/B variant by the service
    assert not LocalStack(config).broker_running()  # the demo stops the stack it started
