"""``reelhouse demo`` end to end, small, then ``make loop`` after it: the real stack, every step.

The smoke test of ``make demo``: a config of its own (free ports, every location under a temporary
directory, a catalogue of a few hundred users and videos, a few seconds of traffic, 8 s of closed
loop) run through the CLI exactly as a newcomer runs it. It checks that every step ran and left
what the next needs: bronze and silver rows, a registered champion, candidates, feeds served and
their events landed back in bronze.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from bench.workspace import workspace_config
from reelhouse.config import load_config
from reelhouse.lake import Lake
from reelhouse.stack import LocalStack
from tests.integration.conftest import require_broker_prerequisites

pytestmark = pytest.mark.integration


# A catalogue of a few hundred users and videos; a trickle of uploads so the loop's days get new videos.
CATALOGUE = {
    "users": 300,
    "videos": 400,
    "creators": 40,
    "topics": 6,
    "uploads_per_hour": 4,
    "rate": 3_000,
    "duration_s": 4,
    "processes": 1,
}


@dataclass(frozen=True)
class DemoRun:
    root: Path
    config_path: Path
    done: subprocess.CompletedProcess


def _reelhouse(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    # A process of its own, as a newcomer runs it (and the demo stops its SparkSession at the end,
    # which in this process would be the test session's).
    command = [str(Path(sys.executable).parent / "reelhouse"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    require_broker_prerequisites()
    root = tmp_path_factory.mktemp("demo")
    path = workspace_config(root, CATALOGUE, name="demo.yaml")
    done = _reelhouse("demo", "--config", str(path), "--closed-loop-seconds", "8", "--closed-loop-users", "40")
    return DemoRun(root, path, done)


def test_the_demo_runs_every_step_on_a_small_catalogue(demo: DemoRun) -> None:
    done, path, tmp_path = demo.done, demo.config_path, demo.root
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


def test_the_multi_day_loop_learns_from_each_day_after_the_demo(demo: DemoRun) -> None:
    """``make loop`` after ``make demo``: two simulated days of a few hundred users. Each day's
    impressions become that day's training examples exactly once, the champion serving day 2 is the
    one the gate chose on day 1's data, and every logged impression carries a propensity in (0, 1]."""
    assert demo.done.returncode == 0, "the demo failed; see the test above"
    done = _reelhouse(
        "simulate", "--config", str(demo.config_path), "--closed-loop", "--days", "2", "--users", "200",
        "--day-seconds", "15", "--concurrency", "24",
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "loop" and [d["day"] for d in report["days"]] == [0, 1]
    first, second = report["days"]

    # Every impression the users reacted to is one training example of its day, no more, no less: the
    # last day's training set covers every day since the bootstrap (the loop's default window).
    config = load_config(demo.config_path)
    lake = Lake(config.lake)
    examples = lake.to_arrow(config.training.table, columns=["request_id", "position", "impression_time"]).to_pandas()
    assert not examples.duplicated(["request_id", "position"]).any()
    t0 = pd.Timestamp(report["settings"]["t0"])
    for day in report["days"]:
        served = sum(day[variant]["impressions"] for variant in ("learning", "frozen"))
        start = t0 + pd.Timedelta(days=day["day"])
        in_day = examples["impression_time"].between(start, start + pd.Timedelta(days=1), inclusive="left")
        assert served > 0 and in_day.sum() == served, day
    # Day 2 is served by the champion the gate left after day 1's flow, whatever it decided.
    gate = first["gate_detail"]
    assert first["gate"] in ("promoted", "kept_champion") and gate["reason"]
    assert second["champion"] == f"{config.training.registered_model}/{gate['champion_version']}"
    assert second["frozen_model"] == first["frozen_model"] == first["champion"]

    silver = lake.to_arrow(
        "silver_events", columns=["event_type", "event_time", "request_id", "position", "propensity"]
    )
    silver = silver.to_pandas()
    loop_impressions = silver[(silver["event_type"] == "impression") & (silver["event_time"] >= t0)]
    served = sum(day[variant]["impressions"] for day in report["days"] for variant in ("learning", "frozen"))
    assert len(loop_impressions) == served
    assert not loop_impressions.duplicated(["request_id", "position"]).any()  # no impression twice
    propensity = loop_impressions["propensity"]
    assert propensity.notna().all()
    assert (propensity > 0).all() and (propensity <= 1).all()
