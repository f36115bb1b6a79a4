"""Where tasks find the config, and the defaults every task shares."""

from __future__ import annotations

import datetime as dt

import pytest

from reelhouse.orchestration import settings
from reelhouse.orchestration.settings import project_dir


def test_a_relative_config_path_is_taken_from_the_project(monkeypatch):
    monkeypatch.setenv("REELHOUSE_CONFIG", "conf/cluster.example.yaml")
    assert settings.default_config_path() == str(project_dir() / "conf" / "cluster.example.yaml")
    monkeypatch.delenv("REELHOUSE_CONFIG")
    assert settings.default_config_path() == str(project_dir() / "conf" / "local.yaml")


def test_the_config_template_asks_the_variable_first(monkeypatch):
    monkeypatch.setenv("REELHOUSE_CONFIG", "/etc/reelhouse.yaml")
    assert settings.config_template() == "{{ var.value.get('reelhouse_config', '/etc/reelhouse.yaml') }}"


def test_the_project_directory_can_be_given(monkeypatch, tmp_path):
    monkeypatch.setenv("REELHOUSE_PROJECT_DIR", str(tmp_path))
    assert settings.job_path("build_silver") == tmp_path / "jobs" / "build_silver.py"


def test_task_defaults_retry_at_least_twice():
    defaults = settings.default_args()
    assert defaults["owner"] == "reelhouse" and defaults["retries"] >= 2
    assert settings.default_args(retries=5)["retries"] == 5


UTC = dt.UTC


def test_a_scheduled_run_rebuilds_its_data_interval():
    start, end = dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 21, tzinfo=UTC)
    assert settings.run_interval(start, end, dt.datetime(2026, 11, 21, 0, 5, tzinfo=UTC), "day") == (start, end)


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        # Triggered at 09:56 on the 21st without a logical date: the last whole day, or hour, before.
        ("day", (dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 21, tzinfo=UTC))),
        ("hour", (dt.datetime(2026, 11, 21, 8, tzinfo=UTC), dt.datetime(2026, 11, 21, 9, tzinfo=UTC))),
    ],
)
def test_a_run_without_a_data_interval_rebuilds_the_last_whole_period(period, expected):
    run_after = dt.datetime(2026, 11, 21, 9, 56, 58, 54331, tzinfo=UTC)
    assert settings.run_interval(None, None, run_after, period) == expected


def test_the_interval_macros_render_iso_bounds():
    macros = settings.interval_macros("day")
    run_after = dt.datetime(2026, 11, 21, 9, 56, tzinfo=UTC)
    assert macros["run_start"](None, None, run_after) == "2026-11-20T00:00:00+00:00"
    assert macros["run_end"](None, None, run_after) == "2026-11-21T00:00:00+00:00"
