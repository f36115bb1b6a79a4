"""The lake API: every Delta table reelhouse reads or writes goes through :class:`Lake`.

Writes: executors write parquet files (:mod:`reelhouse.lake.files`), the driver commits them in
one delta-rs transaction. A write may carry an app transaction ``(app_id, version)``: a table
that already holds that version for that app skips the commit, which makes a replayed
micro-batch a no-op (Delta's idempotent-writes protocol, ``txn`` actions).

Reads: Spark's parquet reader over the active files of a snapshot, with the table's schema
and its partition values; time travel by version or timestamp.

With ``spark.delta_format: native`` (delta-spark jars on the cluster) Spark's own ``delta``
format does both, with the same idempotency through ``txnAppId``/``txnVersion``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from reelhouse.config import LakeConfig
from reelhouse.errors import LakeError
from reelhouse.lake.files import FILE_ACTION_DDL, FILE_ACTION_SCHEMA, FileAction, TableFileWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """Name, schema and partitioning of one Delta table."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class AppTransaction:
    """Identifies one logical write: ``version`` must grow for each new write of ``app_id``."""

    app_id: str
    version: int


@dataclass(frozen=True)
class CommitResult:
    table: str
    version: int | None  # the new table version; None when the write was already committed
    files: int
    rows: int

    @property
    def skipped(self) -> bool:
        return self.version is None


def _rows_in(actions: Iterable[FileAction]) -> int:
    import json

    return sum(json.loads(a.stats)["numRecords"] for a in actions)


def _spark_path(uri: str) -> str:
    # Hadoop's S3 connector is s3a; delta-rs and pyarrow say s3.
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


class Lake:
    def __init__(self, config: LakeConfig, native: bool = False) -> None:
        self.config = config
        self.native = native

    # ----------------------------------------------------------------- tables
    def uri(self, name: str) -> str:
        return f"{self.config.root.rstrip('/')}/{name}"

    def _open(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.config.storage_options or None)
        except TableNotFoundError as e:
            raise LakeError(f"Delta table {name!r} does not exist at {self.uri(name)}; has its job run yet?") from e

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.config.storage_options or None)

    def ensure_table(self, spec: TableSpec) -> DeltaTable:
        """Open the table, creating it empty with the spec's schema and partitioning if missing."""
        if not self.exists(spec.name):
            DeltaTable.create(
                self.uri(spec.name),
                schema=spec.schema,
                partition_by=list(spec.partition_by) or None,
                name=spec.name,
                description=spec.description or None,
                mode="ignore",
                storage_options=self.config.storage_options or None,
            )
            log.info("created Delta table %s at %s", spec.name, self.uri(spec.name))
        return self._open(spec.name)

    def version(self, name: str) -> int:
        return self._open(name).version()

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self._open(name).history(limit)

    def committed_version(self, name: str, app_id: str) -> int | None:
        """The last app-transaction version ``app_id`` committed to ``name`` (None if never)."""
        if not self.exists(name):
            return None
        return self._open(name).transaction_version(app_id)

    # ----------------------------------------------------------------- writes
    def file_writer(self, spec: TableSpec) -> TableFileWriter:
        return TableFileWriter(
            table=spec.name,
            uri=self.uri(spec.name),
            schema=spec.schema,
            partition_by=spec.partition_by,
            storage_options=dict(self.config.storage_options),
            target_file_rows=self.config.target_file_rows,
        )

    def commit(
        self,
        spec: TableSpec,
        actions: list[FileAction],
        *,
        mode: str = "append",
        txn: AppTransaction | None = None,
        metadata: dict[str, Any] | None = None,
        partition_filters: list[tuple[str, str, Any]] | None = None,
    ) -> CommitResult:
        """Commit files the executors wrote, atomically; skip if ``txn`` is already in the table.

        ``mode="overwrite"`` with ``partition_filters`` replaces only the matching partitions.
        """
        table = self.ensure_table(spec)
        if txn is not None:
            done = table.transaction_version(txn.app_id)
            if done is not None and done >= txn.version:
                log.info("%s: %s version %d already committed (table has %d); skipping",
                         spec.name, txn.app_id, txn.version, done)
                return CommitResult(spec.name, None, 0, 0)
        if not actions and mode == "append" and txn is None:
            return CommitResult(spec.name, table.version(), 0, 0)
        adds = [AddAction(a.path, a.size, a.partition_values, a.modification_time, True, a.stats) for a in actions]
        properties = CommitProperties(
            custom_metadata={"reelhouse.table": spec.name, **(metadata or {})},
            app_transactions=[Transaction(txn.app_id, txn.version)] if txn is not None else None,
        )
        try:
            table.create_write_transaction(
                adds,
                mode=mode,
                schema=spec.schema,
                partition_by=list(spec.partition_by) or None,
                partition_filters=partition_filters,
                commit_properties=properties,
            )
        except Exception as e:  # delta-rs raises several unrelated types; all mean "not committed"
            raise LakeError(f"commit to {spec.name} failed ({len(adds)} files): {e}") from e
        table.update_incremental()
        result = CommitResult(spec.name, table.version(), len(adds), _rows_in(actions))
        log.info("%s: committed version %d (%d files, %d rows)", spec.name, result.version, result.files, result.rows)
        return result

    def write_files(self, df: DataFrame, writers: Callable[[pa.Table], list[FileAction]]) -> list[FileAction]:
        """Run ``writers`` over each Spark partition's rows on the executors; return their file actions."""

        def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            rows = [b for b in batches if b.num_rows]
            if not rows:
                return
            actions = writers(pa.Table.from_batches(rows))
            if actions:
                yield pa.RecordBatch.from_pylist([a.to_row() for a in actions], schema=FILE_ACTION_SCHEMA)

        return [FileAction.from_row(row) for row in df.mapInArrow(write_partition, FILE_ACTION_DDL).collect()]

    def append(self, df: DataFrame, spec: TableSpec, txn: AppTransaction | None = None) -> CommitResult:
        return self._write(df, spec, "append", txn)

    def overwrite(
        self,
        df: DataFrame,
        spec: TableSpec,
        txn: AppTransaction | None = None,
        metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Replace the table's rows with ``df``; ``metadata`` goes into the commit (see :meth:`history`)."""
        return self._write(df, spec, "overwrite", txn, metadata)

    def replace_partitions(
        self, df: DataFrame, spec: TableSpec, column: str, values: list[str], txn: AppTransaction | None = None
    ) -> CommitResult:
        """Atomically replace the partitions ``column IN values`` with ``df`` (rows outside them are an error).

        The idempotent write of a data interval: running it twice leaves the same table. A listed
        partition that ``df`` has no rows for is emptied.
        """
        if column not in spec.partition_by:
            raise LakeError(f"{spec.name} is not partitioned by {column!r} (partitioned by {spec.partition_by})")
        if self.native:
            condition = f"{column} IN ({', '.join(repr(v) for v in values)})"
            writer = df.select(*spec.schema.names).write.format("delta").mode("overwrite").option("replaceWhere", condition)
            writer.partitionBy(*spec.partition_by).save(_spark_path(self.uri(spec.name)))
            return CommitResult(spec.name, self.version(spec.name), 0, 0)
        if txn is not None and (self.committed_version(spec.name, txn.app_id) or -1) >= txn.version:
            return CommitResult(spec.name, None, 0, 0)
        writer = self.file_writer(spec)
        allowed = set(values)

        def write_inside(rows: pa.Table) -> list[FileAction]:
            outside = set(rows.column(column).cast(pa.string()).to_pylist()) - allowed
            if outside:
                raise ValueError(f"{spec.name}: rows for {column} {sorted(outside)[:3]} outside the replaced partitions")
            return writer.write(rows)

        actions = self.write_files(df.select(*spec.schema.names), write_inside)
        return self.commit(spec, actions, mode="overwrite", txn=txn, partition_filters=[(column, "in", list(values))])

    def merge_rows(self, spec: TableSpec, rows: pa.Table, keys: tuple[str, ...], compare: tuple[str, ...]) -> dict[str, Any]:
        """Upsert ``rows`` by ``keys`` (Delta MERGE): new keys are inserted, a key whose ``compare``
        columns changed is updated in place, unchanged rows are left alone (no new files).

        Runs in this process with delta-rs: meant for dimension tables of modest size.
        """
        table = self.ensure_table(spec)
        source = rows.select(spec.schema.names).cast(spec.schema)
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        changed = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in compare)
        return (
            table.merge(source, predicate=on, source_alias="s", target_alias="t")
            .when_matched_update_all(predicate=changed)
            .when_not_matched_insert_all()
            .execute()
        )

    def _write(
        self,
        df: DataFrame,
        spec: TableSpec,
        mode: str,
        txn: AppTransaction | None,
        metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        if self.native:
            return self._write_native(df, spec, mode, txn, metadata)
        if txn is not None and (self.committed_version(spec.name, txn.app_id) or -1) >= txn.version:
            return CommitResult(spec.name, None, 0, 0)
        writer = self.file_writer(spec)
        actions = self.write_files(df.select(*spec.schema.names), writer.write)
        return self.commit(spec, actions, mode=mode, txn=txn, metadata=metadata)

    def _write_native(
        self,
        df: DataFrame,
        spec: TableSpec,
        mode: str,
        txn: AppTransaction | None,
        metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        writer = df.select(*spec.schema.names).write.format("delta").mode(mode)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        if metadata:
            # delta-spark keeps one user string per commit; history() shows it as ``userMetadata``.
            import json

            writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
        writer.save(_spark_path(self.uri(spec.name)))
        return CommitResult(spec.name, self.version(spec.name), 0, 0)

    # ------------------------------------------------------------------ reads
    def snapshot(self, name: str, version: int | None = None, timestamp: dt.datetime | str | None = None) -> DeltaTable:
        if version is not None and timestamp is not None:
            raise LakeError("time travel takes a version or a timestamp, not both")
        table = self._open(name, version)
        if timestamp is not None:
            try:
                table.load_as_version(timestamp)
            except Exception as e:
                raise LakeError(f"{name}: no version at or before {timestamp}: {e}") from e
        return table

    def read(
        self,
        spark: SparkSession,
        name: str,
        version: int | None = None,
        timestamp: dt.datetime | str | None = None,
    ) -> DataFrame:
        """A DataFrame over one snapshot of the table (the latest, or a version or timestamp)."""
        if self.native:
            reader = spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            if timestamp is not None:
                reader = reader.option("timestampAsOf", str(timestamp))
            return reader.load(_spark_path(self.uri(name)))
        from pyspark.sql.pandas.types import from_arrow_schema

        table = self.snapshot(name, version, timestamp)
        arrow_schema = pa.schema(table.schema().to_arrow())
        spark_schema = from_arrow_schema(arrow_schema)
        files = [_spark_path(f) for f in table.file_uris()]
        if not files:
            return spark.createDataFrame([], spark_schema)
        frame = (
            spark.read.schema(spark_schema)
            .option("basePath", _spark_path(self.uri(name)))
            .parquet(*files)
        )
        return frame.select(*arrow_schema.names)

    def to_arrow(self, name: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """Read a (small) table on this process with delta-rs, without Spark."""
        return pa.table(self.snapshot(name, version).to_pyarrow_table(columns=columns))
