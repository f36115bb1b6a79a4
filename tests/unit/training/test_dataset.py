"""The pure parts of the training-set builder: as-of times per hour and the table's columns."""

from __future__ import annotations

import datetime as dt

import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.training.columns import FEATURE_COLUMNS, ID_COLUMNS, MODEL_INPUT_COLUMNS
from reelhouse.training.dataset import as_of_buckets, training_set_table

H = 3_600
T0 = int(dt.datetime(2026, 11, 21, tzinfo=dt.UTC).timestamp())


def test_each_hour_gets_the_latest_feature_time_at_or_before_it():
    # Feature times at 02:00 and 05:00; impressions from 00:30 to 06:59.
    buckets = as_of_buckets([T0 + 5 * H, T0 + 2 * H], T0 + H // 2, T0 + 7 * H - 1)
    assert buckets == [
        (T0, None),
        (T0 + H, None),  # before any feature time: nothing known
        (T0 + 2 * H, T0 + 2 * H),
        (T0 + 3 * H, T0 + 2 * H),
        (T0 + 4 * H, T0 + 2 * H),
        (T0 + 5 * H, T0 + 5 * H),
        (T0 + 6 * H, T0 + 5 * H),
    ]


def test_no_feature_times_means_nothing_known():
    assert as_of_buckets([], T0, T0 + H) == [(T0, None), (T0 + H, None)]


def test_a_feature_time_inside_an_hour_is_rejected():
    # Every impression of an hour shares one as-of time only if feature times are whole hours.
    with pytest.raises(ReelhouseError, match="multiple of 3600"):
        as_of_buckets([T0 + 90], T0, T0 + H)


def test_the_table_holds_the_column_contract_partitioned_by_split():
    spec = training_set_table("sets")
    assert spec.name == "sets" and spec.partition_by == ("split",)
    assert spec.schema.names[: len(ID_COLUMNS)] == list(ID_COLUMNS)
    assert set(MODEL_INPUT_COLUMNS) <= set(spec.schema.names)
    assert all(spec.schema.field(c).nullable for c in FEATURE_COLUMNS)  # null: unknown, no activity
