"""The multi-day loop's pure parts: where day 0 starts, the overrides it shares with its service,
its options, and the world it plays (uploads, drifting tastes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from reelhouse.clock import write_clock
from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.errors import ConfigError
from reelhouse.simulator.catalogue import DAY_MS, Catalogue, read_catalogue
from reelhouse.simulator.days import FROZEN, LEARNING, LOOP_EXPERIMENT, _World, first_day_ms, loop_environment
from reelhouse.simulator.options import LoopOptions

PROJECT_DIR = Path(__file__).resolve().parents[3]


def _config(tmp_path, **simulator) -> ReelhouseConfig:
    config = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})
    sim = config.simulator.model_copy(update={"catalogue_dir": str(tmp_path), **simulator})
    return config.model_copy(update={"simulator": sim})


def test_day_zero_is_the_next_utc_midnight_or_after_what_a_previous_loop_played(tmp_path):
    clock = tmp_path / "clock.json"
    now = int(time.time() * 1000)
    assert first_day_ms(clock) == (now // DAY_MS + 1) * DAY_MS
    played_until = (now // DAY_MS + 5) * DAY_MS - 1  # a previous loop ended on day 4 after tomorrow
    write_clock(clock, played_until, 0.0)
    assert first_day_ms(clock) == played_until + 1


def test_the_loop_and_its_service_share_one_set_of_overrides(tmp_path):
    config = _config(tmp_path)
    end = int(time.time() * 1000) + 4 * DAY_MS
    env = loop_environment(config, tmp_path / "clock.json", 8123, end, frozen_version=7)
    assert env["REELHOUSE__SERVING__CLOCK_FILE"] == str(tmp_path / "clock.json")
    assert env["REELHOUSE__SERVING__PORT"] == "8123"
    assert int(env["REELHOUSE__INGEST__MAX_CLOCK_SKEW_S"]) >= 5 * 86_400 - 5
    (experiment,) = json.loads(env["REELHOUSE__EXPERIMENTS"])
    assert experiment["name"] == LOOP_EXPERIMENT
    assert [(v["name"], v["ranker"]) for v in experiment["variants"]] == [
        (LEARNING, "alias:champion"),
        (FROZEN, "version:7"),
    ]
    assert "REELHOUSE__EXPERIMENTS" not in loop_environment(config, tmp_path / "c", 1, end, frozen_version=None)


@pytest.mark.parametrize(
    "changes",
    [{"days": 0}, {"users": 1}, {"day_seconds": 1}, {"drift": 1.5}, {"k": 0}, {"training_days": 0}],
    ids=str,
)
def test_bad_loop_options_are_clear_errors(changes):
    with pytest.raises(ConfigError, match="invalid multi-day loop options"):
        LoopOptions(**{"days": 2, **changes})


def test_the_world_continues_the_catalogues_upload_stream_and_tastes_drift(tmp_path):
    config = _config(tmp_path, creators=20, topics=5, uploads_per_hour=10)
    sim = config.simulator
    catalogue = Catalogue(seed=3, users=50, videos=80, topics=5, creators=20, zipf_exponent=sim.zipf_exponent,
                          uploads_per_hour=10)  # fmt: skip
    start = 1_700_000_000_000
    catalogue.write(str(tmp_path), start, catalogue.uploads_until(3_600_000))  # the demo wrote an hour of uploads
    world = _World(config, read_catalogue(str(tmp_path)), seed=1)
    day_one = world.at(start + DAY_MS)
    assert len(day_one.videos) > 90  # a day of uploads at 10 an hour
    assert np.array_equal(day_one.videos.duration_ms[:80], catalogue.videos.duration_ms[:80])
    before = world.taste.copy()
    world.drift(1, 0.1)
    assert np.allclose(world.taste.sum(axis=1), 1.0) and not np.allclose(world.taste, before)
    assert np.abs(world.taste - before).max() < 0.2  # slowly
    assert world.write(str(tmp_path), start + DAY_MS) == len(day_one.videos)
    assert len(read_catalogue(str(tmp_path)).videos) == len(day_one.videos)


def test_a_catalogue_from_other_settings_is_refused(tmp_path):
    from reelhouse.errors import SimulationError

    config = _config(tmp_path, creators=20)
    catalogue = Catalogue(seed=3, users=50, videos=80, topics=5, creators=33, zipf_exponent=1.1, uploads_per_hour=10)
    catalogue.write(str(tmp_path), 1_700_000_000_000, 80)
    with pytest.raises(SimulationError, match="not written with this config's simulator settings"):
        _World(config, read_catalogue(str(tmp_path)), seed=1)
