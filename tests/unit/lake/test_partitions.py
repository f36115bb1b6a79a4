"""Hourly partition values: one format, UTC, sorting as the hours do."""

from __future__ import annotations

import datetime as dt

from reelhouse.lake.partitions import hour_partition, partition_hour


def test_a_moment_names_the_utc_hour_it_falls_in():
    moment = dt.datetime(2026, 11, 21, 7, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert hour_partition(moment) == "2026-11-21T05"


def test_a_partition_value_parses_back_to_the_start_of_its_hour():
    hour = dt.datetime(2026, 11, 21, 5, tzinfo=dt.UTC)
    assert partition_hour(hour_partition(hour + dt.timedelta(minutes=30))) == hour


def test_values_sort_as_the_hours_do():
    start = dt.datetime(2026, 12, 31, 20, tzinfo=dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(0, 30, 3)]
    assert sorted(hour_partition(h) for h in reversed(hours)) == [hour_partition(h) for h in hours]


def test_a_naive_time_is_utc_not_local_time() -> None:
    # Whatever the machine's zone, a time without an offset names the UTC hour it reads as.
    assert hour_partition(dt.datetime(2026, 11, 21, 5, 30)) == "2026-11-21T05"
