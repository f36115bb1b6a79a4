"""The ingestion job's table specs (bronze, quarantine): what the contract declares, as Spark sees it."""

from __future__ import annotations

import pytest
from pyspark.sql.types import DoubleType, IntegerType, StringType

from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS


@pytest.mark.parametrize("spec", [BRONZE_EVENTS, QUARANTINE_EVENTS])
def test_the_ingest_tables_convert_and_are_partitioned_by_their_own_columns(spec):
    names = spec.spark_schema().fieldNames()
    assert names == spec.schema.names
    assert set(spec.partition_by) <= set(names)


def test_bronze_has_every_optional_impression_field_as_a_nullable_column():
    # Nullable, so a table created before a column gains it in place (Lake.ensure_table), older rows null.
    fields = {f.name: f for f in BRONZE_EVENTS.spark_schema()}
    for name, kind in (("position", IntegerType()), ("variant", StringType()), ("propensity", DoubleType())):
        assert fields[name].dataType == kind and fields[name].nullable, name
    assert "propensity" not in QUARANTINE_EVENTS.schema.names  # quarantine keeps the raw bytes, not fields
