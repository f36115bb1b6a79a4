"""The lake API: every Delta table reelhouse reads or writes goes through :class:`Lake`.

Two engines, one table format:

- **delta-spark** does every write (``append``, ``overwrite``, ``replace_partitions``, ``merge``,
  ``write_arrow``, ``ensure_table``) and every read inside a Spark job (``read``). The writes take
  their SparkSession from the DataFrame. Metadata calls (``exists``, ``version``, ``history``,
  ``committed_version``) use delta-spark when given ``spark=`` and should be, in Spark jobs: that
  engine sees the same log the job's writes and reads use.
- **delta-rs** (``deltalake``) serves processes that have no SparkSession: the feed service
  loading recall tables, the rankers reading a training set, the demo's summary, tests reading
  tables back with a second reader. ``snapshot``, ``to_arrow`` and the metadata calls without
  ``spark=`` use it.

Exactly once: a write may carry an :class:`AppTransaction` ``(app_id, version)``; Delta skips the
write when the table already holds that version (or a later one) for that app (idempotent writes,
``txnAppId``/``txnVersion``), which makes a replayed micro-batch or a retried task a no-op.
:class:`CommitResult` says whether the write committed or was skipped, with the rows it wrote.

Schema evolution: a :class:`TableSpec` may gain nullable columns (an optional event field, say).
:meth:`Lake.ensure_table`, which every write goes through, adds the ones an existing table lacks
(``ALTER TABLE ... ADD COLUMNS``, in the spec's place), so a table created by an older version
keeps taking writes, its older rows null in the new columns; :meth:`Lake.read_spec` reads a table
(or an older version of it) with such columns null, for jobs that read a table another job writes.

Commit metadata: a write's ``metadata`` dict is stored as JSON in the commit's ``userMetadata``
(see :func:`commit_metadata`), with one extra key, :data:`WRITE_ID_KEY`, that lets the writer find
its own commit among concurrent ones (compaction may commit while a stream appends).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from reelhouse.config import LakeConfig
from reelhouse.errors import LakeError

if TYPE_CHECKING:
    import deltalake
    from delta.tables import DeltaTable as SparkDeltaTable
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

WRITE_ID_KEY = "reelhouse.write_id"
"""userMetadata key identifying one write: its writer finds its commit (and its metrics) by it."""


@dataclass(frozen=True)
class TableSpec:
    """Name, schema and partitioning of one Delta table: the one definition writers and readers use.

    Timestamps are ``pa.timestamp(unit, tz="UTC")``; they become Spark/Delta ``timestamp`` columns.
    """

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    description: str = ""

    def spark_schema(self) -> StructType:
        """The schema as Spark sees it (tz-aware timestamps -> TIMESTAMP, nullability kept)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        # Naive timestamps would otherwise become TIMESTAMP_NTZ, a table feature older readers lack.
        return from_arrow_schema(self.schema, prefer_timestamp_ntz=False)


@dataclass(frozen=True)
class AppTransaction:
    """Identifies one logical write: ``version`` must grow for each new write of ``app_id``."""

    app_id: str
    version: int

    def __post_init__(self) -> None:
        if self.version < 0:
            raise LakeError(
                f"app transaction {self.app_id!r}: version {self.version} must be >= 0 (Delta's txnVersion)"
            )


@dataclass(frozen=True)
class CommitResult:
    """What one write did."""

    table: str
    version: int | None  # the version this write committed; None when Delta skipped it (txn already there)
    files: int = 0  # data files the commit added
    rows: int = 0  # rows it wrote (MERGE: rows inserted or updated)
    metrics: Mapping[str, str] = field(default_factory=dict)  # the commit's operationMetrics

    @property
    def skipped(self) -> bool:
        return self.version is None


def commit_metadata(commit: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata dict a write stored in a commit (a :meth:`Lake.history` entry); ``{}`` if none."""
    text = commit.get("userMetadata")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"userMetadata": text}  # written by another tool: keep it, unparsed
    return value if isinstance(value, dict) else {"userMetadata": value}


def _spark_path(uri: str) -> str:
    # Hadoop's S3 connector is s3a; delta-rs and pyarrow say s3.
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def _utc_timestamps(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every time-zoned timestamp in ``UTC`` (the same instants; Spark names it ``Etc/UTC``)."""
    return pa.schema(
        [
            f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz else f
            for f in schema
        ]
    )


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _concurrent_errors() -> tuple[type[BaseException], ...]:
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentDeleteDeleteException,
        ConcurrentDeleteReadException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    return (
        DeltaConcurrentModificationException,
        ConcurrentWriteException,
        MetadataChangedException,
        ProtocolChangedException,
        ConcurrentAppendException,
        ConcurrentDeleteReadException,
        ConcurrentDeleteDeleteException,
        ConcurrentTransactionException,
    )


def is_conflict(error: BaseException) -> bool:
    """True when ``error`` is Delta's optimistic-concurrency conflict: retrying on a fresh snapshot may work."""
    return isinstance(error, _concurrent_errors())


class Lake:
    """The Delta tables under ``config.root``: writes and Spark reads by delta-spark, Python reads by delta-rs."""

    def __init__(self, config: LakeConfig) -> None:
        self.config = config

    # ------------------------------------------------------------------ tables
    def uri(self, name: str) -> str:
        return f"{self.config.root.rstrip('/')}/{name}"

    def spark_uri(self, name: str) -> str:
        """The table's location as Spark's filesystems name it (``s3a://`` for ``s3://``)."""
        return _spark_path(self.uri(name))

    def ensure_table(self, spark: SparkSession, spec: TableSpec) -> SparkDeltaTable:
        """The table, created empty with the spec's columns, partitioning and description if missing;
        an existing table gains the spec's nullable columns it lacks (see :meth:`_add_columns`)."""
        from delta.tables import DeltaTable

        location = self.spark_uri(spec.name)
        snapshot = self._spark_snapshot(spark, location)
        if snapshot.version() >= 0:
            self._add_columns(spark, spec, location, snapshot)
            return DeltaTable.forPath(spark, location)
        builder = DeltaTable.createIfNotExists(spark).location(location).addColumns(spec.spark_schema())
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        if spec.description:
            builder = builder.comment(spec.description)
        try:
            table = builder.execute()
        except Exception as e:
            # Two writers creating the same table at once: the loser conflicts; the table exists either way.
            if not (is_conflict(e) and self._spark_snapshot(spark, location).version() >= 0):
                raise
            table = DeltaTable.forPath(spark, location)
        log.info("created Delta table %s at %s", spec.name, location)
        return table

    def _add_columns(self, spark: SparkSession, spec: TableSpec, location: str, snapshot: Any) -> None:
        """Add to the existing table the columns of ``spec`` it lacks, each after its predecessor
        in the spec, in one metadata-only commit (no data file is rewritten; older rows read null).

        Only nullable columns: the rows already there have no value for a required one. Checked
        on every write, from the snapshot the write takes anyway: the usual answer is "nothing to add".
        """
        present = set(snapshot.schema().fieldNames())
        missing = [f for f in spec.spark_schema() if f.name not in present]
        if not missing:
            return
        required = [f.name for f in missing if not f.nullable]
        if required:
            raise LakeError(
                f"{spec.name}: the table lacks the required columns {required} of its TableSpec and its rows have "
                f"no value for them: migrate the table (or remove it at {self.uri(spec.name)} if it can be rebuilt)"
            )
        names = spec.schema.names
        columns = []
        for f in missing:
            at = names.index(f.name)
            place = f"AFTER `{names[at - 1]}`" if at else "FIRST"
            columns.append(f"`{f.name}` {f.dataType.simpleString()} {place}")
        quoted = location.replace("`", "``")
        try:
            spark.sql(f"ALTER TABLE delta.`{quoted}` ADD COLUMNS ({', '.join(columns)})")
        except Exception as e:
            # Two writers evolving the table at once: the loser conflicts; the columns are there either way.
            if not is_conflict(e):
                raise
            if not {f.name for f in missing} <= set(self._spark_snapshot(spark, location).schema().fieldNames()):
                raise
        log.info("%s: added columns %s (null in the rows already there)", spec.name, [f.name for f in missing])

    def exists(self, name: str, spark: SparkSession | None = None) -> bool:
        if spark is not None:
            return self._spark_snapshot(spark, self.spark_uri(name)).version() >= 0
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri(name), storage_options=self._storage_options())

    def version(self, name: str, spark: SparkSession | None = None) -> int:
        """The table's latest version (delta-spark with ``spark``, else delta-rs)."""
        if spark is not None:
            version = self._spark_snapshot(spark, self.spark_uri(name)).version()
            if version < 0:
                raise self._missing(name)
            return int(version)
        return self.snapshot(name).version()

    def history(self, name: str, limit: int | None = None, spark: SparkSession | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first.

        Both engines give ``version``, ``operation``, ``operationParameters``, ``operationMetrics``
        and ``userMetadata`` (parse it with :func:`commit_metadata`); ``timestamp`` is a naive datetime
        in this process's local time zone from delta-spark (PySpark's rule), epoch milliseconds from delta-rs.
        """
        if spark is None:
            return self.snapshot(name).history(limit)
        if not self.exists(name, spark):
            raise self._missing(name)
        from delta.tables import DeltaTable

        rows = DeltaTable.forPath(spark, self.spark_uri(name)).history(limit).collect()
        return [row.asDict(recursive=True) for row in rows]

    def committed_version(self, name: str, app_id: str, spark: SparkSession | None = None) -> int | None:
        """The last app-transaction version ``app_id`` committed to ``name`` (None if never)."""
        if spark is not None:
            snapshot = self._spark_snapshot(spark, self.spark_uri(name))
            if snapshot.version() < 0:
                return None
            found = snapshot.transactions().get(app_id)  # a Scala Option[Long]
            return int(found.get()) if found.isDefined() else None
        if not self.exists(name):
            return None
        return self.snapshot(name).transaction_version(app_id)

    def partition_values(
        self, name: str, spark: SparkSession, version: int | None = None
    ) -> list[dict[str, str | None]]:
        """The distinct partitions of the table (at ``version``) as ``{column: value as text}``,
        from the Delta log's file list: no data file is read."""
        from pyspark.sql import DataFrame
        from pyspark.sql import functions as F

        snapshot = self._spark_snapshot(spark, self.spark_uri(name), version)
        if snapshot.version() < 0:
            raise self._missing(name)
        # As JSON text: Spark cannot deduplicate a map column.
        files = DataFrame(snapshot.allFiles().toDF(), spark).select(F.to_json("partitionValues").alias("values"))
        return [json.loads(row["values"]) for row in files.distinct().collect()]

    # ------------------------------------------------------------------ writes
    def append(
        self,
        df: DataFrame,
        spec: TableSpec,
        txn: AppTransaction | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Append ``df``'s rows (selected and cast to the spec); skipped if ``txn`` is already in the table."""
        return self._write(df, spec, "append", txn, metadata)

    def overwrite(
        self,
        df: DataFrame,
        spec: TableSpec,
        txn: AppTransaction | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Replace the table's rows with ``df``; ``metadata`` goes into the commit (see :func:`commit_metadata`)."""
        return self._write(df, spec, "overwrite", txn, metadata)

    def replace_partitions(
        self,
        df: DataFrame,
        spec: TableSpec,
        column: str,
        values: Sequence[str],
        txn: AppTransaction | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Atomically replace the partitions ``column IN values`` with ``df`` (Delta ``replaceWhere``).

        The idempotent write of a data interval: running it twice leaves the same table. A listed
        partition that ``df`` has no rows for ends empty; a row outside the listed partitions fails
        the write (Delta checks it while writing) and nothing is committed.
        """
        if column not in spec.partition_by:
            raise LakeError(f"{spec.name} is not partitioned by {column!r} (partitioned by {spec.partition_by})")
        if not values:
            raise LakeError(f"{spec.name}: replace_partitions needs the {column} values of the interval it rewrites")
        condition = f"`{column}` IN ({', '.join(_sql_string(str(v)) for v in values)})"
        return self._write(df, spec, "overwrite", txn, metadata, replace_where=condition)

    def merge(self, df: DataFrame, spec: TableSpec, keys: Sequence[str], compare: Sequence[str]) -> CommitResult:
        """Upsert ``df`` by ``keys`` (Delta MERGE): new keys are inserted, a key whose ``compare``
        columns changed is updated, unchanged rows are left alone. ``rows``: inserted + updated.

        ``df`` must hold each key once (Delta refuses a MERGE where two source rows match one target row).
        """
        spark = df.sparkSession
        self.ensure_table(spark, spec)
        from delta.tables import DeltaTable

        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        builder = (
            DeltaTable.forPath(spark, self.spark_uri(spec.name))
            .alias("t")
            .merge(self._conform(df, spec).alias("s"), on)
        )
        if compare:
            changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compare)
            builder = builder.whenMatchedUpdateAll(condition=changed)
        try:
            summary = builder.whenNotMatchedInsertAll().execute().collect()
        except Exception as e:
            raise self._write_error(spec, "merge", e) from e
        metrics = {k: str(v) for k, v in (summary[0].asDict() if summary else {}).items()}
        version = self.version(spec.name, spark)
        rows = int(metrics.get("num_inserted_rows", 0)) + int(metrics.get("num_updated_rows", 0))
        log.info("%s: merged at version %d: %s", spec.name, version, metrics)
        return CommitResult(spec.name, version, 0, rows, metrics)

    def write_arrow(
        self,
        spark: SparkSession,
        rows: pa.Table,
        spec: TableSpec,
        mode: Literal["append", "overwrite"] = "append",
        txn: AppTransaction | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Write rows built on the driver (a modest Arrow table) through the same path as :meth:`append`."""
        if mode not in ("append", "overwrite"):
            raise LakeError(f"write_arrow mode must be 'append' or 'overwrite', not {mode!r}")
        return self._write(self.arrow_frame(spark, rows, spec), spec, mode, txn, metadata)

    def arrow_frame(self, spark: SparkSession, rows: pa.Table, spec: TableSpec) -> DataFrame:
        """A DataFrame of ``rows`` selected and cast to the spec's schema."""
        missing = [n for n in spec.schema.names if n not in rows.column_names]
        if missing:
            raise LakeError(f"{spec.name}: rows lack columns {missing}; build them with the table's TableSpec")
        try:
            conformed = rows.select(spec.schema.names).cast(spec.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
            raise LakeError(f"{spec.name}: rows do not cast to the table's schema: {e}") from e
        # PySpark 4.2 loses rows of a chunked table whose empty chunks come in a row or in the
        # middle (e.g. a concat of empty and full tables); without empty chunks it keeps them all.
        conformed = pa.Table.from_batches([b for b in conformed.to_batches() if b.num_rows], spec.schema)
        return spark.createDataFrame(conformed, schema=spec.spark_schema())

    def _write(
        self,
        df: DataFrame,
        spec: TableSpec,
        mode: str,
        txn: AppTransaction | None,
        metadata: Mapping[str, Any] | None,
        replace_where: str | None = None,
    ) -> CommitResult:
        spark = df.sparkSession
        location = self.spark_uri(spec.name)
        self.ensure_table(spark, spec)
        before = self._spark_snapshot(spark, location).version()
        write_id = uuid.uuid4().hex
        # delta-spark keeps one user string per commit; history() shows it as ``userMetadata``.
        user_metadata = json.dumps({**(metadata or {}), WRITE_ID_KEY: write_id}, sort_keys=True, default=str)
        writer = (
            self._conform(df, spec)
            .write.format("delta")
            .mode(mode)
            .option("userMetadata", user_metadata)
            .option("maxRecordsPerFile", str(self.config.target_file_rows))
        )
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", str(txn.version))
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
        try:
            writer.save(location)
        except Exception as e:
            raise self._write_error(spec, mode if replace_where is None else "replace_partitions", e) from e
        return self._result(spark, spec.name, before, write_id, txn)

    def _result(
        self, spark: SparkSession, name: str, before: int, write_id: str, txn: AppTransaction | None
    ) -> CommitResult:
        """Find this write's commit among those made since ``before`` (compaction may have committed too)."""
        after = self._spark_snapshot(spark, self.spark_uri(name)).version()
        if after > before:
            for commit in self.history(name, limit=after - before, spark=spark):
                if commit_metadata(commit).get(WRITE_ID_KEY) == write_id:
                    metrics = {k: str(v) for k, v in (commit.get("operationMetrics") or {}).items()}
                    result = CommitResult(
                        name,
                        int(commit["version"]),
                        int(metrics.get("numFiles") or metrics.get("numAddedFiles") or 0),
                        int(metrics.get("numOutputRows") or 0),
                        metrics,
                    )
                    log.info(
                        "%s: committed version %d (%d files, %d rows)", name, result.version, result.files, result.rows
                    )
                    return result
        done = None if txn is None else self.committed_version(name, txn.app_id, spark)
        if done is not None and txn is not None and done >= txn.version:
            log.info("%s: %s version %d already committed; Delta skipped the write", name, txn.app_id, txn.version)
            return CommitResult(name, None)
        # Delta commits nothing for a write that neither adds nor removes a file (an empty
        # replaceWhere over empty partitions): the table is as it was.
        log.info("%s: nothing to commit; the table stays at version %d", name, after)
        return CommitResult(name, after)

    @staticmethod
    def _conform(df: DataFrame, spec: TableSpec) -> DataFrame:
        """``df``'s columns in the spec's order, cast to its types (a cast to the same type is free)."""
        from pyspark.sql import functions as F

        missing = [n for n in spec.schema.names if n not in df.columns]
        if missing:
            raise LakeError(f"{spec.name}: the DataFrame lacks columns {missing}; build it with the table's TableSpec")
        return df.select(*(F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in spec.spark_schema()))

    def _write_error(self, spec: TableSpec, what: str, error: Exception) -> Exception:
        """A LakeError for errors a caller can act on; conflicts and other failures pass unchanged."""
        from pyspark.errors import AnalysisException

        if is_conflict(error):
            return error  # the caller may retry on a fresh snapshot (maintenance does)
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "does not conform to partial table overwrite condition" in str(
            error
        ) or "DELTA_REPLACE_WHERE_MISMATCH" in str(error):
            return LakeError(
                f"{spec.name}: {what} got rows outside the partitions it replaces; nothing was committed ({text})"
            )
        if isinstance(error, AnalysisException):
            return LakeError(
                f"{spec.name}: {what} refused by Delta: {text}. If the table's schema or partitioning differs "
                f"from its TableSpec, migrate the table (or remove it at {self.uri(spec.name)} if it can be rebuilt)"
            )
        return error

    # ------------------------------------------------------------------- reads
    def read(
        self,
        spark: SparkSession,
        name: str,
        version: int | None = None,
        timestamp: dt.datetime | str | None = None,
    ) -> DataFrame:
        """A DataFrame over one snapshot of the table (the latest, or a version or timestamp), by delta-spark."""
        if version is not None and timestamp is not None:
            raise LakeError("time travel takes a version or a timestamp, not both")
        from pyspark.errors import AnalysisException

        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", str(version))
        if timestamp is not None:
            text = (
                timestamp.astimezone(dt.UTC).isoformat()
                if isinstance(timestamp, dt.datetime) and timestamp.tzinfo
                else str(timestamp)
            )
            reader = reader.option("timestampAsOf", text)
        try:
            return reader.load(self.spark_uri(name))
        except AnalysisException as e:
            if not self.exists(name, spark):
                raise self._missing(name) from e
            raise LakeError(
                f"{name}: cannot read version {version} / timestamp {timestamp}: {str(e).splitlines()[0]}"
            ) from e

    def read_spec(self, spark: SparkSession, spec: TableSpec, version: int | None = None) -> DataFrame:
        """:meth:`read` of the spec's table, with every nullable column of the spec the snapshot
        lacks as a typed null: a table (or a version of it) from before a column was added reads
        like a current one, so a job need not wait for the table's writer to evolve it."""
        from pyspark.sql import functions as F

        frame = self.read(spark, spec.name, version)
        missing = [f for f in spec.spark_schema() if f.nullable and f.name not in frame.columns]
        return frame.withColumns({f.name: F.lit(None).cast(f.dataType) for f in missing}) if missing else frame

    def read_arrow(
        self, spark: SparkSession, name: str, version: int | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """A small table (or some of its columns) read by delta-spark and collected on the driver as Arrow.

        Timestamps come back as the lake's ``UTC`` (Spark hands them over as ``Etc/UTC``).
        """
        frame = self.read(spark, name, version)
        table = (frame.select(*columns) if columns else frame).toArrow()
        return table.cast(_utc_timestamps(table.schema))

    def snapshot(
        self, name: str, version: int | None = None, timestamp: dt.datetime | str | None = None
    ) -> deltalake.DeltaTable:
        """The table (or one version of it) opened by delta-rs, for processes without Spark."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        if version is not None and timestamp is not None:
            raise LakeError("time travel takes a version or a timestamp, not both")
        try:
            table = DeltaTable(self.uri(name), version=version, storage_options=self._storage_options())
        except TableNotFoundError as e:
            raise self._missing(name) from e
        if timestamp is not None:
            try:
                table.load_as_version(timestamp)
            except Exception as e:  # delta-rs raises several unrelated types for "no such version"
                raise LakeError(f"{name}: no version at or before {timestamp}: {e}") from e
        return table

    def to_arrow(self, name: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """Read a (small) table on this process with delta-rs, without Spark."""
        return pa.table(self.snapshot(name, version).to_pyarrow_table(columns=columns))

    # ----------------------------------------------------------------- helpers
    def _storage_options(self) -> dict[str, str] | None:
        return dict(self.config.storage_options) or None

    def _missing(self, name: str) -> LakeError:
        return LakeError(f"Delta table {name!r} does not exist at {self.uri(name)}; has its job run yet?")

    @staticmethod
    def _spark_snapshot(spark: SparkSession, location: str, version: int | None = None) -> Any:
        """delta-spark's snapshot of the log at ``location``: the current one (version -1: no
        table), or the one at ``version``.

        Through the JVM: the Python API has no call for a table's version, its app transactions
        or its file list, and ``history(1)`` costs a Spark job where this lists the log. Scala
        default arguments are passed explicitly (py4j cannot omit them).
        """
        delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, location)  # type: ignore[attr-defined]
        if version is None:
            defaults = (getattr(delta_log, f"update$default${i}")() for i in (1, 2, 3))
            return delta_log.update(*defaults)
        defaults = (getattr(delta_log, f"getSnapshotAt$default${i}")() for i in (2, 3, 4))
        return delta_log.getSnapshotAt(version, *defaults)
