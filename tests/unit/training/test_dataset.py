"""The pure parts of the training-set builder: as-of times per hour and the table's columns."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.silver.tables import SILVER_EVENTS
from reelhouse.training.columns import FEATURE_COLUMNS, ID_COLUMNS, LOGGING_COLUMNS, MODEL_INPUT_COLUMNS, PROPENSITY
from reelhouse.training.dataset import as_of_buckets, training_set_table
from reelhouse.training.splits import REQUIRED_COLUMNS

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


def test_every_example_carries_its_impressions_logging_columns_as_silver_holds_them():
    schema = training_set_table().schema
    assert PROPENSITY in LOGGING_COLUMNS and "variant" in LOGGING_COLUMNS
    for name in LOGGING_COLUMNS:
        # Nullable: impressions logged without them (the open-loop simulator's) are examples too.
        assert schema.field(name).nullable, name
        assert schema.field(name).type == SILVER_EVENTS.schema.field(name).type, name
    assert schema.field(PROPENSITY).type == pa.float64()
    assert SILVER_EVENTS.schema.field(PROPENSITY).nullable


def test_logging_columns_are_never_model_inputs_nor_read_for_training():
    # A ranker given the logging policy's propensity would learn that policy, not the users.
    assert not set(LOGGING_COLUMNS) & set(MODEL_INPUT_COLUMNS)
    assert not set(LOGGING_COLUMNS) & set(REQUIRED_COLUMNS)  # what read_training_set reads besides ids
