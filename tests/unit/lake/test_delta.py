"""The lake API's pure parts: table specs as Spark sees them, app transactions, commit metadata, argument checks."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

from reelhouse.config import LakeConfig
from reelhouse.errors import LakeError
from reelhouse.lake import AppTransaction, CommitResult, Lake, TableSpec, commit_metadata

SPEC = TableSpec(
    "plays",
    pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("watch_ms", pa.int64()),
            pa.field("event_date", pa.date32(), nullable=False),
        ]
    ),
    ("event_date",),
    "test table",
)


def test_a_spec_becomes_the_spark_schema_with_utc_timestamps_and_nullability_kept():
    assert SPEC.spark_schema() == StructType(
        [
            StructField("event_id", StringType(), False),
            StructField("event_time", TimestampType(), False),
            StructField("watch_ms", LongType(), True),
            StructField("event_date", DateType(), False),
        ]
    )


def test_a_naive_timestamp_is_a_utc_timestamp_not_timestamp_ntz():
    # TIMESTAMP_NTZ is a Delta table feature some readers lack; reelhouse times are instants.
    spec = TableSpec("t", pa.schema([pa.field("at", pa.timestamp("ms"))]))
    assert spec.spark_schema()["at"].dataType == TimestampType()


def test_app_transaction_versions_are_never_negative():
    # Delta's txnVersion must be >= 0: a replayed batch id counts from 0.
    assert AppTransaction("ingest", 0).version == 0
    with pytest.raises(LakeError, match="must be >= 0"):
        AppTransaction("ingest", -1)


def test_a_commit_result_without_a_version_was_skipped():
    assert CommitResult("t", None).skipped
    assert not CommitResult("t", 3, files=1, rows=10).skipped


def test_commit_metadata_parses_the_json_a_write_stored():
    assert commit_metadata({"userMetadata": '{"inputs": "{\\"silver\\": 3}", "reelhouse.write_id": "w"}'}) == {
        "inputs": '{"silver": 3}',
        "reelhouse.write_id": "w",
    }
    assert commit_metadata({"userMetadata": None}) == {} and commit_metadata({}) == {}
    # Written by another tool: kept as it is, not an error.
    assert commit_metadata({"userMetadata": "nightly fix"}) == {"userMetadata": "nightly fix"}


def test_replace_partitions_checks_its_arguments_before_touching_spark():
    lake = Lake(LakeConfig(root="/nowhere"))
    with pytest.raises(LakeError, match="not partitioned by 'event_id'"):
        lake.replace_partitions(None, SPEC, "event_id", ["a"])  # type: ignore[arg-type]
    with pytest.raises(LakeError, match="needs the event_date values"):
        lake.replace_partitions(None, SPEC, "event_date", [])  # type: ignore[arg-type]


def test_table_locations_follow_the_root_and_spark_says_s3a():
    lake = Lake(LakeConfig(root="s3://bucket/lake/"))
    assert lake.uri("plays") == "s3://bucket/lake/plays"
    assert lake.spark_uri("plays") == "s3a://bucket/lake/plays"
    assert Lake(LakeConfig(root="/data/lake")).spark_uri("plays") == "/data/lake/plays"


def test_reading_a_missing_table_without_spark_says_what_to_do(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    assert not lake.exists("plays") and lake.committed_version("plays", "app") is None
    with pytest.raises(LakeError, match="does not exist .* has its job run yet"):
        lake.to_arrow("plays")
    with pytest.raises(LakeError, match="a version or a timestamp, not both"):
        lake.snapshot("plays", version=1, timestamp=dt.datetime.now(dt.UTC))


# ---------------------------------------------------------------------------------- schema evolution
# ensure_table against a stand-in for delta-spark: the table's columns in its snapshot, and the SQL
# it is sent.
class _Snapshot:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def version(self) -> int:
        return 3

    def schema(self) -> _Snapshot:
        return self

    def fieldNames(self) -> list[str]:  # noqa: N802 - the JVM's name
        return self.names


class _Spark:
    def __init__(self, error: Exception | None = None) -> None:
        self.statements: list[str] = []
        self.error = error

    def sql(self, statement: str) -> None:
        self.statements.append(statement)
        if self.error is not None:
            raise self.error


@pytest.fixture
def table_columns(monkeypatch):
    """Set the columns the table's successive snapshots have; DeltaTable.forPath gives the path back."""
    from delta.tables import DeltaTable

    snapshots: list[list[str]] = []
    monkeypatch.setattr(Lake, "_spark_snapshot", staticmethod(lambda spark, location: _Snapshot(snapshots.pop(0))))
    monkeypatch.setattr(DeltaTable, "forPath", staticmethod(lambda spark, location: location))
    return snapshots


EVOLVED = TableSpec(
    "plays",
    pa.schema(
        [
            pa.field("first", pa.string()),
            *SPEC.schema,
            pa.field("propensity", pa.float64()),
            pa.field("variant", pa.string()),
        ]
    ),
    SPEC.partition_by,
)


def test_an_existing_table_gains_the_nullable_columns_its_spec_added_each_in_its_place(table_columns):
    table_columns.append(SPEC.schema.names)
    spark = _Spark()
    assert Lake(LakeConfig(root="/lake")).ensure_table(spark, EVOLVED) == "/lake/plays"  # type: ignore[arg-type]
    # One metadata-only commit; each column after its predecessor in the spec (one added before it too).
    assert spark.statements == [
        "ALTER TABLE delta.`/lake/plays` ADD COLUMNS (`first` string FIRST, `propensity` double AFTER `event_date`, "
        "`variant` string AFTER `propensity`)"
    ]


def test_a_table_with_every_column_of_its_spec_is_left_alone(table_columns):
    # Every write ensures its table: the usual case must cost no commit.
    table_columns.append([*reversed(EVOLVED.schema.names), "dropped_from_the_spec"])
    spark = _Spark()
    Lake(LakeConfig(root="/lake")).ensure_table(spark, EVOLVED)  # type: ignore[arg-type]
    assert spark.statements == []


def test_a_required_column_the_table_lacks_is_an_error_not_an_alter(table_columns):
    table_columns.append(SPEC.schema.names[:-1])  # event_date, not nullable, is missing
    spark = _Spark()
    with pytest.raises(LakeError, match=r"lacks the required columns \['event_date'\].*migrate the table"):
        Lake(LakeConfig(root="/lake")).ensure_table(spark, SPEC)  # type: ignore[arg-type]
    assert spark.statements == []


def test_a_concurrent_writer_adding_the_same_columns_is_not_an_error(table_columns, monkeypatch):
    import reelhouse.lake.delta as delta

    monkeypatch.setattr(delta, "is_conflict", lambda error: str(error) == "conflict")
    table_columns += [SPEC.schema.names, EVOLVED.schema.names]  # the other writer's commit won
    Lake(LakeConfig(root="/lake")).ensure_table(_Spark(RuntimeError("conflict")), EVOLVED)  # type: ignore[arg-type]
    table_columns += [SPEC.schema.names, SPEC.schema.names]  # a conflict, but the columns are still missing
    with pytest.raises(RuntimeError):
        Lake(LakeConfig(root="/lake")).ensure_table(_Spark(RuntimeError("conflict")), EVOLVED)  # type: ignore[arg-type]
    table_columns += [SPEC.schema.names]  # any other failure
    with pytest.raises(RuntimeError):
        Lake(LakeConfig(root="/lake")).ensure_table(_Spark(RuntimeError("disk full")), EVOLVED)  # type: ignore[arg-type]
