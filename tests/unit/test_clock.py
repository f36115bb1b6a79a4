"""The simulated clock file: what readers see, jumps, pauses and broken files."""

from __future__ import annotations

import time

import pytest

from reelhouse.clock import FileClock, WallClock, clock_for, read_clock, write_clock
from reelhouse.errors import ReelhouseError


def test_without_a_clock_file_the_service_reads_the_wall_clock():
    assert isinstance(clock_for(None), WallClock)
    assert abs(WallClock().now_ms() - time.time() * 1000) < 1_000


def test_a_clock_file_runs_scaled_from_its_setting(tmp_path):
    path = tmp_path / "clock.json"
    write_clock(path, sim_ms=1_000_000, scale=100.0, wall_ms=int(time.time() * 1000) - 2_000)
    now = FileClock(path).now_ms()
    assert 1_000_000 + 150_000 < now < 1_000_000 + 300_000  # about 2 s at 100x


def test_a_paused_clock_stands_still_and_a_new_setting_is_picked_up(tmp_path, monkeypatch):
    path = tmp_path / "clock.json"
    write_clock(path, sim_ms=5_000, scale=0.0)
    clock = FileClock(path)
    assert clock.now_ms() == 5_000
    monkeypatch.setattr("reelhouse.clock.RECHECK_S", 0.0)
    write_clock(path, sim_ms=86_400_000, scale=0.0)
    assert clock.now_ms() == 86_400_000


def test_missing_or_broken_clock_files_are_clear_errors(tmp_path):
    with pytest.raises(ReelhouseError, match="does not exist"):
        FileClock(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ReelhouseError, match="is not a clock"):
        read_clock(tmp_path / "bad.json")
    with pytest.raises(ReelhouseError, match="backwards"):
        write_clock(tmp_path / "c.json", 0, -1.0)
