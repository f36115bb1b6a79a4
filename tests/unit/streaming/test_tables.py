"""The ingestion job's table specs (bronze, quarantine): what the contract declares, as Spark sees it."""

from __future__ import annotations

import pytest

from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS


@pytest.mark.parametrize("spec", [BRONZE_EVENTS, QUARANTINE_EVENTS])
def test_the_ingest_tables_convert_and_are_partitioned_by_their_own_columns(spec):
    names = spec.spark_schema().fieldNames()
    assert names == spec.schema.names
    assert set(spec.partition_by) <= set(names)
